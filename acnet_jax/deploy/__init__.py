"""Shipping the fused deploy model.

artifacts           model.jax_exported (jax.export), a SavedModel (jax2tf), model.json
torchvision_format  a fused ResNet as torchvision's state dict (safetensors)
onnx_format         model.onnx (jax2onnx; the onnx extra)
int8                model_int8.onnx (onnxruntime's static quantizer) and eval_int8.json
int8_layers         int8_layers.json: each layer quantized alone, where int8's cost comes from
run_images          a run's test and calibration images, normalised, for checks outside JAX
"""
