"""The lip-sync model: networks, checkpoints, packages and runtimes."""
