"""DataModules: named splits of [0, 1] images and their targets, one per task kind."""
