"""Train a small DDPM on the bundled 8x8 digits and save it in diffusers format.

The diffusion model of the digits rows of diffusion denoised smoothing (Carlini et al. 2023;
``model=diffusion_denoiser``, ``+experiment=digits_diffusion_denoiser``): a diffusers
``UNet2DModel`` trained with the standard DDPM objective (Ho et al. 2020: ``t`` uniform over all
1000 steps of diffusers' default linear schedule, ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``,
MSE on ``eps``) on the TRAINING split of ``data=digits`` at ``seed`` (the classifier's split: the
test images certified later are never seen). Images are mapped to [-1, 1], as diffusion models
expect. It is a generic DDPM, not tuned to one sigma: the one-shot denoiser reads it at the
timestep each sigma needs. One thread; the defaults took 2 min 12 s of CPU time (24 min wall on
a CPU shared with other jobs; docs/results.md).

Writes a pipeline folder: ``OUT/unet`` (``config.json``, ``diffusion_pytorch_model.safetensors``),
``OUT/scheduler`` (``scheduler_config.json``) and ``OUT/training.json`` (the settings, the last
losses and the held-out eps-MSE at the timesteps of sigma 0.12/0.25/0.5/1.0).

Usage: ``python benchmarks/train_ddpm_digits.py --out outputs/ddpm_digits [--steps 3000]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from smoothcert.data.classification import digits_splits
from smoothcert.models.diffusion import timestep_for_sigma


def images(dataset) -> torch.Tensor:
    """The images of a digits split, [N, 1, 8, 8] in [0, 1]."""
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def build_unet(widths: tuple[int, ...]) -> UNet2DModel:
    """A small UNet2DModel for 1-channel 8x8 images: one ResNet block per level, no attention."""
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=widths,
        down_block_types=("DownBlock2D",) * len(widths),
        up_block_types=("UpBlock2D",) * len(widths),
        norm_num_groups=min(8, widths[0]),
    )


@torch.no_grad()
def eps_mse(unet: UNet2DModel, scheduler: DDPMScheduler, x0: torch.Tensor, t: int) -> float:
    """The held-out noise-prediction MSE at timestep ``t`` (fixed noise, seed 0)."""
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    steps = torch.full((len(x0),), t, dtype=torch.long)
    return float(F.mse_loss(unet(scheduler.add_noise(x0, noise, steps), steps).sample, noise))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/ddpm_digits")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--widths", default="8,16", help="block_out_channels, comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="data split (data.seed) and init")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    splits = digits_splits(seed=args.seed)
    train, val = images(splits.train) * 2 - 1, images(splits.val) * 2 - 1  # [-1, 1]
    scheduler = DDPMScheduler(num_train_timesteps=1000)  # linear 1e-4 .. 0.02, epsilon
    unet = build_unet(tuple(int(w) for w in args.widths.split(",")))
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    generator = torch.Generator().manual_seed(args.seed)
    losses, start = [], time.time()
    for step in range(args.steps):
        index = torch.randint(len(train), (args.batch_size,), generator=generator)
        x0 = train[index]
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(scheduler.config.num_train_timesteps, (len(x0),), generator=generator)
        loss = F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        decay.step()
        losses.append(float(loss))
        if (step + 1) % 500 == 0:
            recent = sum(losses[-500:]) / 500
            print(f"step {step + 1}: loss {recent:.4f} ({time.time() - start:.0f} s)", flush=True)
    unet.eval()
    abar = scheduler.alphas_cumprod
    held_out = {
        str(sigma): eps_mse(unet, scheduler, val, timestep_for_sigma(abar, sigma))
        for sigma in (0.12, 0.25, 0.5, 1.0)
    }
    out = Path(args.out)
    unet.save_pretrained(out / "unet")
    scheduler.save_pretrained(out / "scheduler")
    report = {
        **vars(args),
        "parameters": sum(p.numel() for p in unet.parameters()),
        "seconds": round(time.time() - start, 1),
        "loss_last_500": sum(losses[-500:]) / min(500, len(losses)),
        "val_eps_mse_at_sigma": held_out,
        "torch": torch.__version__,
    }
    (out / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
