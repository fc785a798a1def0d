"""Configs: plain Python functions returning ml_collections.ConfigDict."""
