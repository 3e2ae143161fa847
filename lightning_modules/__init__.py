from lightning_modules.run import resolvers  # noqa: F401  (registers ${folder_classes:...})
