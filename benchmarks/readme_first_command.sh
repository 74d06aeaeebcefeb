#!/bin/bash
# Times README's first command as a newcomer runs it: a fresh clone of BRANCH from REPO in a
# temporary folder, an empty venv, cold pip / JAX / matplotlib caches, the command read from
# README's first bash block and timed part by part (run it under the machine's CPU lock).
#   bash benchmarks/readme_first_command.sh [REPO] [BRANCH]
set -euo pipefail
unset PYTHONPATH
REPO=$(realpath "${1:-.}"); BRANCH=${2:-$(git -C "$REPO" rev-parse --abbrev-ref HEAD)}
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
git clone -q -b "$BRANCH" "$REPO" "$WORK/clone"; cd "$WORK/clone"
export XDG_CACHE_HOME="$WORK/cache" MPLCONFIGDIR="$WORK/mpl"
COMMAND=$(sed -n '/^```bash/{n;p;q}' README.md)
echo "README: $COMMAND"
START=$(date +%s.%N)
while IFS= read -r part; do
    t=$(date +%s.%N)
    bash -c "$part" >> "$WORK/log" 2>&1 || { tail -20 "$WORK/log"; exit 1; }
    printf '%6.1f s  %s\n' "$(echo "$(date +%s.%N) - $t" | bc)" "$part"
done < <(echo "$COMMAND" | sed 's/ && /\n/g')
printf '%6.1f s  total\n' "$(echo "$(date +%s.%N) - $START" | bc)"
echo "venv: $(du -sh .venv | cut -f1); figures: $(ls attrib-out | tr '\n' ' ')"
