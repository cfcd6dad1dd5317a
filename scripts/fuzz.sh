#!/bin/sh
# Runs each libFuzzer target built in BUILDDIR for SECONDS seconds.
#
#   scripts/fuzz.sh BUILDDIR SECONDS
#
# Each target keeps a corpus in fuzz-corpus/<target>/ (gitignored) that grows
# from run to run; fuzz_cert is seeded from tests/fuzz/cert-seeds/.
# fuzz_h1_parse is also seeded from ../shared/fuzz
# (http1-corpus/ and http.dict) when those exist beside the repository.
# The differential oracle of fuzz_h1_parse prints "DIFF:" lines; they are
# counted, and the unique ones are kept in fuzz-corpus/diffs.txt.
# Exits non-zero when a target crashes (the input is saved as
# fuzz-corpus/<target>-crash-*), times out or runs out of memory.
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 BUILDDIR SECONDS" >&2
    exit 2
fi
builddir=$1
seconds=$2

top=$(git rev-parse --show-toplevel)
shared="$top/../shared/fuzz"
out="$top/fuzz-corpus"
diffs="$out/diffs.txt"
mkdir -p "$out"
touch "$diffs"

failed=0
ran=0
for target in fuzz_h1_parse fuzz_json fuzz_route fuzz_port fuzz_api fuzz_fields \
    fuzz_cert fuzz_proxy_parse fuzz_acme_http; do
    bin="$builddir/$target"
    if [ ! -x "$bin" ]; then
        echo "$target: not built in $builddir, skipped"
        continue
    fi
    ran=$((ran + 1))
    corpus="$out/$target"
    log="$out/$target.log"
    mkdir -p "$corpus"

    # The seeds and the dictionary are optional: pass only what exists.
    set -- -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="$out/$target-" "$corpus"
    if [ "$target" = fuzz_h1_parse ]; then
        if [ -f "$shared/http.dict" ]; then
            set -- -dict="$shared/http.dict" "$@"
        fi
        if [ -d "$shared/http1-corpus" ]; then
            set -- "$@" "$shared/http1-corpus"
        fi
    fi
    if [ "$target" = fuzz_cert ]; then
        set -- "$@" "$top/tests/fuzz/cert-seeds"
    fi

    echo "$target: fuzzing for ${seconds}s (log: $log)"
    rc=0
    "$bin" "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "$target: FAILED (exit $rc); see $log and $out/$target-*" >&2
        grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_)' "$log" | head -5 >&2 || true
        failed=1
    fi
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" |
        sed "s/^/$target: /" || true

    ndiff=$(grep -c '^DIFF:' "$log" || true)
    if [ "$ndiff" -gt 0 ]; then
        before=$(wc -l <"$diffs")
        grep '^DIFF:' "$log" | sort -u - "$diffs" >"$diffs.new"
        mv "$diffs.new" "$diffs"
        after=$(wc -l <"$diffs")
        echo "$target: $ndiff DIFF lines, $((after - before)) new unique" \
            "(all in $diffs); by llhttp error:"
        grep '^DIFF:' "$log" | cut -d: -f2 | sort | uniq -c | sort -rn
    else
        echo "$target: no DIFF lines"
    fi
done

if [ "$ran" -eq 0 ]; then
    echo "no fuzz target found in $builddir (configure with -Dfuzz=true)" >&2
    exit 1
fi
exit "$failed"
