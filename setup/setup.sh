#!/usr/bin/env bash
# Downloads Qwen3-4B (Q8_0 GGUF) and Qwen3's tokenizer.json from the Hugging Face hub into setup/.
#
#   setup/setup.sh              # setup/qwen3-4b.gguf and setup/tokenizer.json
#   QWEN_GGUF_REPO=Qwen/Qwen3-0.6B-GGUF QWEN_GGUF_FILE=Qwen3-0.6B-Q8_0.gguf \
#       QWEN_GGUF_DEST=qwen3-0.6b.gguf setup/setup.sh   # another model, saved as setup/qwen3-0.6b.gguf
#
# Resumable: an interrupted download continues where it stopped (curl -C -). Verified: the size and,
# for large (LFS) files, the SHA-256 that the hub publishes for the file are checked after download;
# a mismatch deletes nothing but says so and exits non-zero. Set HF_TOKEN for gated repositories and
# HF_ENDPOINT to use a mirror.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
endpoint="${HF_ENDPOINT:-https://huggingface.co}"
gguf_repo="${QWEN_GGUF_REPO:-Qwen/Qwen3-4B-GGUF}"
gguf_file="${QWEN_GGUF_FILE:-Qwen3-4B-Q8_0.gguf}"
tokenizer_repo="${QWEN_TOKENIZER_REPO:-Qwen/Qwen3-4B}"

say() { printf '%s\n' "$*" >&2; }
die() { say "setup: $*"; exit 1; }

command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
command -v sha256sum >/dev/null || die "sha256sum is needed (coreutils)"

auth=()
[ -n "${HF_TOKEN:-}" ] && auth=(-H "Authorization: Bearer ${HF_TOKEN}")

# Prints "SIZE SHA256" as the hub publishes them (SHA256 is empty for small non-LFS files).
remote_info() {
    local url="$1" headers size etag linked
    headers="$(curl -sSI "${auth[@]}" "$url")" || die "cannot reach $url (network? HF_ENDPOINT?)"
    size="$(printf '%s' "$headers" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-linked-size"{print $2}' | tail -n1)"
    linked="$(printf '%s' "$headers" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-linked-etag"{print $2}' | tail -n1 | tr -d '"')"
    etag="$(printf '%s' "$headers" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}' | tail -n1 | tr -d '"')"
    if [ -z "$size" ]; then
        size="$(printf '%s' "$headers" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-length"{print $2}' | tail -n1)"
    fi
    # An LFS file's linked ETag is its SHA-256 (64 hex digits); a git blob's is a SHA-1.
    local sha=""
    for tag in "$linked" "$etag"; do
        if [[ "$tag" =~ ^[0-9a-f]{64}$ ]]; then sha="$tag"; break; fi
    done
    printf '%s %s\n' "${size:-}" "$sha"
}

fetch() {
    local url="$1" dest="$2"
    read -r size sha < <(remote_info "$url")
    if [ -f "$dest" ] && [ -n "$size" ] && [ "$(stat -c %s "$dest")" = "$size" ]; then
        say "$dest: already complete ($size bytes)"
    else
        say "downloading $url"
        say "        to $dest${size:+ ($size bytes)}"
        curl -fL --retry 5 --retry-delay 3 -C - "${auth[@]}" -o "$dest.part" "$url" \
            || die "download of $url failed; run setup/setup.sh again to resume"
        mv "$dest.part" "$dest"
    fi
    if [ -n "$size" ] && [ "$(stat -c %s "$dest")" != "$size" ]; then
        die "$dest has $(stat -c %s "$dest") bytes, the hub says $size: delete it and run again"
    fi
    if [ -n "$sha" ]; then
        say "verifying SHA-256 of $dest ..."
        local got
        got="$(sha256sum "$dest" | cut -d' ' -f1)"
        [ "$got" = "$sha" ] || die "$dest: SHA-256 $got does not match the hub's $sha: delete it and run again"
        say "$dest: SHA-256 ok"
    fi
}

fetch "$endpoint/$gguf_repo/resolve/main/$gguf_file" "$here/${QWEN_GGUF_DEST:-qwen3-4b.gguf}"
fetch "$endpoint/$tokenizer_repo/resolve/main/tokenizer.json" "$here/tokenizer.json"
say "done. Try: cargo run --release -- -p \"Hello, world!\""
