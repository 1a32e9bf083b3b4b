"""Hydra configs of cyclegan-train (a package so that `pkg://cyclegan.conf` finds them when installed)."""
