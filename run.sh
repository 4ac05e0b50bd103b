#!/usr/bin/env bash
# ./run.sh PRESET [--config.KEY=VALUE ...]
# Trains configs/PRESET.py into runs/PRESET (resuming if it holds checkpoints),
# then evaluates the trained and the fused model. PRESET may also be an
# original try_arg as MODEL:TRY_ARG, e.g. rc56:acnet_lrs1. No argument: list.
set -euo pipefail
cd "$(dirname "$0")"

if [ $# -eq 0 ]; then
  echo "usage: ./run.sh PRESET [--config.KEY=VALUE ...]"
  echo
  echo "presets:"
  for f in configs/*_normal*.py configs/*_acnet*.py; do echo "  $(basename "$f" .py)"; done
  echo
  echo "or MODEL:TRY_ARG, MODEL one of:"
  for f in configs/*.py; do
    case "$f" in configs/*_normal*.py|configs/*_acnet*.py|configs/default.py) ;;
      *) printf " %s" "$(basename "$f" .py)" ;; esac
  done
  echo
  echo "and TRY_ARG CONV_RECIPE[_cifar100], CONV normal or acnet, RECIPE lrs1, lrs2, cosine or"
  echo "densenet for the CIFAR models, imagenet for the ImageNet ones; e.g. rc56:acnet_lrs1,"
  echo "vc:normal_cosine_cifar100, resnet18:acnet_imagenet"
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
exec "${PYTHON:-python3}" -m acnet_jax.main --config="$config" --workdir="$workdir" "$@"
