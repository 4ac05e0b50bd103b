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
  for f in configs/*.py; do
    name=$(basename "$f" .py)
    case "$name" in default|__init__|rc56|wrnc16) ;; *) echo "  $name" ;; esac
  done
  echo
  echo "or MODEL:TRY_ARG with MODEL in rc56, wrnc16 and TRY_ARG one of:"
  echo "  normal_lrs1 acnet_lrs1 normal_lrs2 acnet_lrs2 normal_cosine acnet_cosine"
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
