#!/bin/sh
# cargo-stubs [MANIFEST]: creates a placeholder for every target source file
# that the manifest (default ./Cargo.toml) names and that does not exist yet.
#
# The Dockerfile runs it twice. First with only Cargo.toml and Cargo.lock
# copied, so `cargo build` compiles every dependency into a layer that is
# reused until the manifest or the lock file changes. Then after copying the
# real sources, for targets the image does not build (tests, benches,
# examples) but that Cargo still wants to find when it reads the manifest.
set -eu
manifest=${1:-Cargo.toml}
awk '
    function flush() {
        if (kind == "") return
        if (path != "") print kind, path
        else if (kind == "lib") print kind, "src/lib.rs"
        else if (kind == "bin" && name != "") print kind, "src/bin/" name ".rs"
        else if (kind == "test") print kind, "tests/" name ".rs"
        else if (kind == "bench") print kind, "benches/" name ".rs"
        else if (kind == "example") print kind, "examples/" name ".rs"
    }
    function value(s) { sub(/^[^"]*"/, "", s); sub(/".*$/, "", s); return s }
    /^[ \t]*\[/ {
        flush(); kind = ""; name = ""; path = ""
        if ($0 ~ /^\[lib\]/) kind = "lib"
        else if ($0 ~ /^\[\[bin\]\]/) kind = "bin"
        else if ($0 ~ /^\[\[test\]\]/) kind = "test"
        else if ($0 ~ /^\[\[bench\]\]/) kind = "bench"
        else if ($0 ~ /^\[\[example\]\]/) kind = "example"
        next
    }
    kind != "" && /^[ \t]*name[ \t]*=/ { name = value($0) }
    kind != "" && /^[ \t]*path[ \t]*=/ { path = value($0) }
    END { flush(); print "lib", "src/lib.rs"; print "bin", "src/main.rs" }
' "$manifest" | sort -u | while read -r kind path; do
    [ -e "$path" ] && continue
    mkdir -p "$(dirname "$path")"
    if [ "$kind" = lib ]; then : >"$path"; else echo 'fn main() {}' >"$path"; fi
    echo "cargo-stubs: $kind $path"
done
