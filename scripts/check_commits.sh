#!/usr/bin/env bash
# check_commits - every commit subject since the gate was introduced is under 72 characters.
#   scripts/check_commits.sh [BASE]     (default: the commit before the layered tree)
# A clone without that history (shallow) is not checked, with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-76baff25d889a351b62e31ce0eb474c10c48f22a}
if ! git cat-file -e "$base^{commit}" 2> /dev/null; then
    echo "check_commits: $base is not in this clone's history; not checked"
    exit 0
fi
bad=$(git log --format='%h %s' "$base..HEAD" | awk '{ s = $0; sub(/^[^ ]+ /, "", s) } length(s) >= 72')
if [ -n "$bad" ]; then
    echo "check_commits: subjects of 72 characters or more:"
    echo "$bad"
    exit 1
fi
echo "check_commits: $(git rev-list --count "$base..HEAD") subjects under 72 characters"
