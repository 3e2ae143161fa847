from lightning_modules import resolvers  # noqa: F401  (registers ${folder_classes:...})
