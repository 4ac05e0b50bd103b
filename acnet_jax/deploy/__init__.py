"""Shipping the fused deploy model.

    artifacts   model.jax_exported (jax.export), a SavedModel (jax2tf) and model.json
"""
