#!/usr/bin/env bash
# ./run.sh PRESET [--config.KEY=VALUE ...]
# Trains configs/PRESET.py into runs/PRESET (resuming if it holds checkpoints),
# then evaluates the trained and the fused model. PRESET may also be an
# original try_arg as MODEL:TRY_ARG, e.g. rc56:acnet_lrs1. No argument: list.
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-python3}"

if [ $# -eq 0 ]; then
  echo "usage: ./run.sh PRESET [--config.KEY=VALUE ...]"
  echo
  echo "presets:"
  for f in configs/*.py; do
    case "$f" in configs/default.py) ;; *_normal*.py|*_acnet*.py|*/first_run.py)
      echo "  $(basename "$f" .py)" ;; esac
  done
  echo
  "$python" -c '
import os
from acnet_jax.training import presets
print("or MODEL:CONV_RECIPE, CONV one of", ", ".join(presets.CONVS) + ", and RECIPE one the model")
print("takes (the CIFAR recipes also with _cifar100 at the end):")
for model in presets.MODELS_OF_PRESETS:
    if os.path.isfile(f"configs/{model}.py"):
        print(f"  {model:13}", ", ".join(presets.recipes_of(model)))'
  echo "e.g. rc56:acnet_lrs1, vc:normal_cosine_cifar100, cfqkbnc:dbb_cosine, resnet18:acnet_imagenet"
  exit 0
fi

preset=$1
shift
if [[ $preset == *:* ]]; then
  config="configs/${preset%%:*}.py:${preset#*:}"
  workdir="runs/${preset/:/_}"
else
  config="configs/$preset.py"
  workdir="runs/$preset"
fi
if [ ! -f "${config%%:*}" ]; then
  echo "run.sh: no preset '$preset' (no file ${config%%:*}); run ./run.sh to list them" >&2
  exit 2
fi
exec "$python" -m acnet_jax.main --config="$config" --workdir="$workdir" "$@"
