"""energyctl: spend energy exactly once, from the command line."""
