"""Upstream seams: one module per external source (hf, torch, github); one Protocol in base.py."""
