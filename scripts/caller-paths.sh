# Sourced by scripts/dashboard.sh before it moves into the repository: relative paths in ATLAS_HOME and
# ATLAS_PLUGINS mean the directory the user started from (a plugin given as plugins/mine.py was looked for under the
# repository, and a relative ATLAS_HOME was made there).
CALLER="$PWD"
if [[ -n "${ATLAS_HOME:-}" && "$ATLAS_HOME" != /* && "$ATLAS_HOME" != "~"* ]]; then
    export ATLAS_HOME="$CALLER/$ATLAS_HOME"
fi
if [[ -n "${ATLAS_PLUGINS:-}" ]]; then
    entries=()
    IFS=':,' read -ra parts <<< "$ATLAS_PLUGINS"
    for entry in "${parts[@]}"; do
        # A file entry (core/models/plugins.py: it ends in .py or has a /); a dotted module name stays as it is.
        if [[ ( "$entry" == *.py || "$entry" == */* ) && "$entry" != /* && "$entry" != "~"* ]]; then
            entry="$CALLER/$entry"
        fi
        entries+=("$entry")
    done
    ATLAS_PLUGINS="$(IFS=:; echo "${entries[*]}")"
    export ATLAS_PLUGINS
fi
