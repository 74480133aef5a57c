# One vLLM CPU server for `eagle3 sample`; sourced by quickstart.sh and benchmarks/e2e_smollm2.sh.
#   start_vllm TARGET PORT LOG_DIR VLLM_PYTHON   starts `eagle3 serve`, returns once it answers
#   stop_vllm                                    stops it (also run on exit while it is up)
#   VLLM_COMPILE=1                               compiled graphs: ~60 s more start-up, ~1.2x the
#                                                tokens/s (worth it for long regenerations)
start_vllm() {
    local eager=(-- --enforce-eager)
    [ "${VLLM_COMPILE:-0}" = 1 ] && eager=()
    eagle3 serve --target-model "$1" --base-port "$2" --vllm-python "$4" --dtype float32 \
        --max-model-len 2048 --log-dir "$3" "${eager[@]}" &
    VLLM_SERVER_PID=$!
    trap stop_vllm EXIT
    until curl -sf "http://127.0.0.1:$2/v1/models" >/dev/null; do
        kill -0 "$VLLM_SERVER_PID" 2>/dev/null || { echo "vLLM failed to start; see $3" >&2; exit 1; }
        sleep 3
    done
}

stop_vllm() {
    kill -TERM "$VLLM_SERVER_PID" 2>/dev/null
    wait "$VLLM_SERVER_PID" 2>/dev/null || true
    trap - EXIT
}
