"""Shipping the fused deploy model.

    artifacts           model.jax_exported (jax.export), a SavedModel (jax2tf), model.json
    torchvision_format  a fused ResNet as torchvision's state dict (safetensors)
"""
