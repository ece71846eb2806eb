"""Differential test: every corpus program is loaded into the host kernel too (same program
type, same maps) and must get the same accept/reject verdict from both verifiers.

Deliberate differences are marked in the corpus itself with ``@kernel <reason>``; the
comparison is skipped for them (and listed in the skip reason).  Unprivileged cases are
skipped: the test process is root and the kernel would verify them as privileged.
"""

import errno
import os
import re

import pytest

from kernel_oracle import kernel_map_create, kernel_prog_load, require_kernel
from pybpf.isa import opcodes as op
from pybpf.isa.insn import Insn, encode
from verifier_cases.btfblob import kernel_load
from verifier_cases.corpus import assemble_case, case_btf, load_all, params, verify_case

CASES = load_all()


def kernel_verdict(case, log_level=1):
    insns = assemble_case(case)
    fds = {}
    try:
        for fd, mi in case.maps.items():
            inner_fd = 0
            if mi.inner is not None:
                i = mi.inner
                inner_fd, err = kernel_map_create(i.map_type, i.key_size, i.value_size, i.max_entries, i.flags)
                if inner_fd < 0:
                    pytest.skip(f"kernel cannot create inner map {i}: errno {err}")
                fds[-fd] = inner_fd     # closed with the others; only the outer map is referenced
            kfd, err = kernel_map_create(mi.map_type, mi.key_size, mi.value_size, mi.max_entries, mi.flags,
                                         inner_fd)
            if kfd < 0:
                pytest.skip(f"kernel cannot create map {mi}: errno {err}")
            fds[fd] = kfd
        patched = []
        for ins in insns:
            if ins.code == op.LD_IMM64 and ins.src in (op.PSEUDO_MAP_FD, op.PSEUDO_MAP_VALUE) and ins.imm in fds:
                ins = Insn(ins.code, ins.dst, ins.src, ins.off, fds[ins.imm])
            patched.append(ins)
        blob, recs = case_btf(case, insns)
        if blob is not None:
            pfd, err, log = kernel_load(encode(patched), case.prog_type, blob, recs,
                                        license=case.license, log_level=log_level)
        else:
            pfd, err, log = kernel_prog_load(encode(patched), case.prog_type, license=case.license,
                                             log_level=log_level)
        if pfd >= 0:
            os.close(pfd)
        return pfd >= 0, err, log
    finally:
        for kfd in fds.values():
            os.close(kfd)


@pytest.mark.parametrize("case", params(CASES))
def test_same_verdict_as_kernel(case):
    require_kernel()
    if not case.privileged:
        pytest.skip("unprivileged case: this process is root, the kernel would verify it privileged")
    if case.kernel:
        pytest.skip(f"deliberate difference: {case.kernel}")
    ok, err, klog = kernel_verdict(case)
    ours = verify_case(case, 1)
    assert ours.ok == ok, (f"pybpf {'accepts' if ours.ok else 'rejects'}, kernel "
                           f"{'accepts' if ok else 'rejects'} (errno {err})\n--- kernel log:\n{klog}\n"
                           f"--- pybpf log:\n{ours.log}")
    if not ok and err != errno.ENOSPC:
        # Same errno, and the kernel's last message is a line of ours.
        assert ours.errno == err, f"errno {ours.errno} != kernel {err}\n{klog}\n---\n{ours.log}"
        lines = [x for x in klog.splitlines() if x.strip() and not x.startswith("processed ")]
        # After "infinite loop detected" Linux dumps both states, with precision marks
        # pybpf does not track: compare the verdict line itself.
        loop = [x for x in lines if x.startswith("infinite loop detected")]
        kernel_error = loop[0] if loop else lines[-1]
        assert kernel_error in ours.log.splitlines(), f"kernel says {kernel_error!r}\n---\n{ours.log}"


def _live_block(log: str) -> list[str] | None:
    if "Live regs before insn:" not in log:
        return None
    out = []
    for line in log.split("Live regs before insn:\n", 1)[1].splitlines():
        if not re.match(r"^[ 0-9]{7}: [.0-9]{10} ", line):
            break
        # map loads print the kernel's map address; pybpf prints the fd
        out.append(re.sub(r"\(18\) (r\d+) = .*", r"(18) \1 = <map>", line) if " (18) " in line else line)
    return out


@pytest.mark.parametrize("case", params(CASES))
def test_same_live_registers_as_kernel(case):
    """Level 2 opens with the registers live before each instruction: same as Linux 6.18."""
    require_kernel()
    if not case.privileged or case.kernel:
        pytest.skip("not comparable with the kernel (see the corpus entry)")
    _, _, klog = kernel_verdict(case, log_level=2)
    expected = _live_block(klog)
    if expected is None:
        pytest.skip("this kernel does not print the live registers")
    ours = verify_case(case, 2)
    assert _live_block(ours.log) == expected


# Level-1 logs that differ from Linux 6.18's, with the reason.
LOG_DIFFERENCES: dict[str, str] = {}


def _normalise(log: str) -> list[str]:
    out = []
    for line in log.splitlines():
        if line.startswith(("processed ", "verification time", "stack depth")):
            continue
        # map loads print the kernel's map address; pybpf prints the fd
        line = re.sub(r"\(18\) (r\d+) = (0xffff[0-9a-f]+|map\[fd:\d+\](\[0\]\+\d+)?) +;", r"(18) \1 = <map> ;", line)
        line = re.sub(r"\(18\) (r\d+) = (0xffff[0-9a-f]+|map\[fd:\d+\](\[0\]\+\d+)?)$", r"(18) \1 = <map>", line)
        out.append(line)
    return out


@pytest.mark.parametrize("case", params(CASES))
def test_same_level1_log_as_kernel(case):
    """The whole level-1 log is Linux's, line for line (map addresses aside)."""
    require_kernel()
    if not case.privileged or case.kernel:
        pytest.skip("not comparable with the kernel (see the corpus entry)")
    if case.id in LOG_DIFFERENCES:
        pytest.skip(LOG_DIFFERENCES[case.id])
    _, _, klog = kernel_verdict(case, log_level=1)
    assert _normalise(verify_case(case, 1).log) == _normalise(klog)


# Level-2 logs that differ from Linux 6.18's, by category (the reason is the skip message).
_LIVE_STACK = ("Linux 6.18 prints its new stack-liveness pass (liveness.c: '(0) frame 0 insn N +live -8', "
               "'live stack update done'), which pybpf does not model")
_CALLBACK = ("callback/subprogram paths: Linux's backtracking and state printing across callback "
             "frames and tail calls in subprograms (which Linux also explores as a return) differ")
_PRECISION = ("precision: pybpf marks precision by origin sets, not by Linux's backtracking; "
              "the walk printed here differs (a fallback, a stack spill through a non-fp pointer, "
              "a spill kept precise by Linux only)")
_LOOP_TRUNC = "the kernel's log buffer fills up (ENOSPC) before the loop is rejected"
_PRINT = "state printing after a branch pop or prune that pybpf does not reproduce yet"
_SCC = ("Linux 6.18 prints its loop (SCC) bookkeeping: 'SCC enter/backedge/exit (N)' and the precision "
        "it propagates over loop back-edges; a helper call with a callback is such a loop")
LOG2_DIFFERENCES: dict[str, str] = {
    "callbacks:for_each_prog_array_rejected": _SCC,
    "callbacks:for_each_key_to_helper": _SCC,
    "callbacks:for_each_key_misaligned_read": _SCC,
    "callbacks:for_each_array_index_key": _SCC,
    "callbacks:loop_in_xdp_packet_ctx": _SCC,
    "callbacks:loop_in_kprobe": _SCC,
    "callbacks:loop_nr_loops_unknown": _SCC,
    "callbacks:loop_callback_returns_map_ptr": _SCC,
    "callbacks:for_each_ctx_r4": _SCC,
    "callbacks:for_each_callback_returns_3": _SCC,
    "callbacks:for_each_queue_rejected": _SCC,
    "callbacks:for_each_map_ptr_arg": _SCC,
    "callbacks:for_each_value_write": _SCC,
    "callbacks:for_each_value_past_end": _SCC,
    "callbacks:for_each_key_past_end": _SCC,
    "callbacks:for_each_write_key": _SCC,
    "callbacks:loop_callback_calls_subprog": _SCC,
    "callbacks:loop_returns_integer": _SCC,
    "callbacks:loop_clobbers_r1_r5": _SCC,
    "callbacks:loop_callback_writes_caller_r6_safe": _SCC,
    "callbacks:loop_ctx_null_deref": _SCC,
    "callbacks:loop_ctx_nonzero_scalar": _SCC,
    "callbacks:loop_ctx_not_stack": _SCC,
    "callbacks:loop_not_a_func": _SCC,
    "callbacks:loop_callback_no_r0": _SCC,
    "callbacks:loop_callback_returns_pointer": _SCC,
    "callbacks:loop_callback_returns_negative": _SCC,
    "callbacks:loop_callback_returns_masked": _SCC,
    "callbacks:loop_callback_returns_unknown": _SCC,
    "callbacks:loop_callback_returns_2": _SCC,
    "callbacks:loop_minimal": _SCC,
    "alu:and_bounds_for_stack_index": _PRINT,
    "alu:pointer_add_const_ok": _LIVE_STACK,
    "alu:pointer_add_reg_const_ok": _LIVE_STACK,
    "alu:scalar_plus_pointer": _LIVE_STACK,
    "branches:add_overflow_unknown": _PRINT,
    "branches:branch_on_uninit_stack_value": _PRINT + '; ' + _LIVE_STACK,
    "branches:jeq_const_learned": _PRINT,
    "branches:jge_jle_range": _PRINT,
    "branches:jgt_bound_then_check": _PRINT,
    "branches:jmp32_bound": _PRINT,
    "branches:jne_excludes_endpoint": _PRINT + '; ' + _LIVE_STACK,
    "branches:jset_unknown_both": _PRINT,
    "branches:jsgt_signed_bound": _PRINT,
    "branches:jslt_then_unsigned_unknown": _PRINT,
    "branches:linked_scalars_refined_together": _PRINT,
    "branches:linked_with_delta_refines_origin": _PRINT + '; ' + _LIVE_STACK,
    "branches:mod_unknown_result": _PRINT,
    "branches:ptr_compare_ptr_priv": _PRINT,
    "branches:ptr_null_compare_nonnull": _PRINT,
    "branches:reg_reg_compare_bounds": _PRINT,
    "branches:signed_32_refine": _PRINT,
    "callbacks:for_each_hash_sum": _CALLBACK,
    "callbacks:foreach_callback_branch_seen_twice": _PRINT,
    "callbacks:loop_callback_branch_seen_twice": _PRINT,
    "callbacks:loop_accumulate_on_stack": _CALLBACK,
    "callbacks:loop_callback_infinite_inner_loop": _CALLBACK,
    "callbacks:loop_callback_leaks_ringbuf": _CALLBACK,
    "callbacks:loop_counter_overflows_value": _CALLBACK,
    "callbacks:loop_ctx_reads_caller_uninit_stack": _CALLBACK,
    "callbacks:loop_func_info_count_mismatch": _CALLBACK,
    "callbacks:loop_func_info_wrong_offset": _CALLBACK,
    "callbacks:loop_index_bounded": _CALLBACK,
    "callbacks:loop_index_bounds_unknown": _CALLBACK,
    "callbacks:loop_iteration_limit_small": _CALLBACK,
    "callbacks:loop_nested_bpf_loop": _CALLBACK,
    "calls:call_callee_own_stack": _CALLBACK,
    "calls:call_combined_stack_ok": _CALLBACK,
    "calls:call_combined_stack_too_large": _CALLBACK,
    "calls:call_helper_in_subprog": _CALLBACK,
    "calls:call_jump_out_of_subprog": _CALLBACK,
    "calls:call_loop_in_subprog": _CALLBACK,
    "calls:call_pass_stack_ptr": _CALLBACK,
    "calls:call_read_caller_stack_uninit_priv": _CALLBACK,
    "calls:call_return_map_value": _CALLBACK,
    "calls:call_subprog_no_exit": _CALLBACK,
    "calls:call_with_ld_abs": _CALLBACK,
    "calls:ld_abs_in_subprog_with_btf": _CALLBACK,
    "calls:tailcall_in_main_with_big_stack_and_subprog": _CALLBACK,
    "calls:tailcall_in_subprog_caller_stack_240": _CALLBACK,
    "calls:tailcall_in_subprog_caller_stack_256": _CALLBACK,
    "calls:tailcall_in_subprog_own_stack_large": _CALLBACK,
    "calls:tailcall_in_subprog_without_btf": _CALLBACK,
    "calls:tailcall_nested_callers_stack": _CALLBACK,
    "helpers:helper_csum_diff": _LIVE_STACK,
    "helpers:helper_get_current_comm_kprobe": _PRINT + '; ' + _LIVE_STACK,
    "helpers:helper_perf_event_output": _LIVE_STACK,
    "helpers:helper_perf_event_output_wrong_map": _PRECISION,
    "helpers:helper_probe_read_kernel": _PRINT + '; ' + _LIVE_STACK,
    "helpers:helper_probe_read_old": _PRINT,
    "helpers:helper_ringbuf_output": _LIVE_STACK,
    "helpers:helper_skb_load_bytes": _PRINT + '; ' + _LIVE_STACK,
    "helpers:helper_smp_processor_id": _PRINT,
    "helpers:helper_trace_printk_dual_bsd_gpl": _LIVE_STACK,
    "helpers:helper_trace_printk_ok": _LIVE_STACK,
    "helpers:helper_trace_printk_size_bounded": _LIVE_STACK,
    "helpers:helper_tunnel_key": _PRINT + '; ' + _LIVE_STACK,
    "loops:loop_const_bound_1000": _LOOP_TRUNC,
    "loops:loop_down_counter": _PRINT,
    "loops:loop_index_past_array": _PRECISION,
    "loops:loop_index_stack_array": _PRECISION,
    "loops:loop_infinite_same_state": _PRINT,
    "loops:loop_infinite_unconditional_body": _PRINT,
    "loops:loop_jmp32_counter": _PRINT,
    "loops:loop_nested": _PRINT,
    "loops:loop_never_terminates_unknown": _LOOP_TRUNC,
    "loops:loop_packet_bounded": _PRINT,
    "loops:loop_packet_unbounded_walk": _LOOP_TRUNC,
    "loops:loop_pruned_join": _PRINT,
    "loops:loop_signed_counter": _PRINT,
    "loops:loop_sum_stack": _PRINT + '; ' + _LIVE_STACK,
    "loops:loop_unbounded_counter": _LOOP_TRUNC,
    "loops:loop_unknown_bound_from_ctx": _PRECISION,
    "loops:loop_with_map_lookup": _PRECISION,
    "loops:many_diamonds_prune": _PRINT,
    "maps:array_const_key_spilled_reg": _PRECISION,
    "maps:delete_ok": _LIVE_STACK,
    "maps:hash_of_maps_lookup_inner_hash": _PRINT + '; ' + _LIVE_STACK,
    "maps:key_from_map_value": _LIVE_STACK,
    "maps:key_uninit_stack_priv": _LIVE_STACK,
    "maps:lookup_copy_null_checked_via_other": _LIVE_STACK,
    "maps:lookup_lru_hash_ok": _LIVE_STACK,
    "maps:lookup_null_checked": _LIVE_STACK,
    "maps:lookup_null_checked_jne": _PRINT + '; ' + _LIVE_STACK,
    "maps:lookup_percpu_array_ok": _LIVE_STACK,
    "maps:map_in_map_lookup_inner": _PRINT + '; ' + _LIVE_STACK,
    "maps:map_value_pseudo_array_two_entries": _PRINT,
    "maps:map_value_pseudo_hash_rejected": _PRINT,
    "maps:map_value_pseudo_offset_too_big": _PRINT,
    "maps:map_value_pseudo_unreachable_checked_early": _PRINT,
    "maps:percpu_array_const_key": _LIVE_STACK,
    "maps:queue_pop_uninit_value_ok": _PRINT + '; ' + _LIVE_STACK,
    "maps:queue_push_ok": _LIVE_STACK,
    "maps:spill_map_value_or_null_then_check": _LIVE_STACK,
    "maps:update_ok": _LIVE_STACK,
    "maps:value_last_byte_ok": _LIVE_STACK,
    "maps:value_unaligned_ok": _LIVE_STACK,
    "maps:value_var_offset_and_mask": _LIVE_STACK,
    "maps:value_var_offset_bounded": _PRINT + '; ' + _LIVE_STACK,
    "maps:value_var_offset_jmp32_bound": _PRINT + '; ' + _LIVE_STACK,
    "packet:pkt_end_at_decides_jge": _PRINT,
    "packet:pkt_end_beyond_access_rejected": _PRINT,
    "packet:pkt_end_beyond_decides_jgt": _PRINT,
    "packet:pkt_end_beyond_decides_jle": _PRINT,
    "packet:pkt_end_reversed_operands": _PRINT,
    "packet:pkt_end_tc_beyond_decides": _PRINT,
    "packet:tc_pkt_checked": _PRINT,
    "packet:tc_store_bytes_invalidates": _PRINT,
    "packet:xdp_adjust_head_recheck_ok": _PRINT,
    "packet:xdp_pkt_checked": _PRINT,
    "packet:xdp_pkt_compare_pkt_pkt": _PRINT,
    "packet:xdp_pkt_end_first": _PRINT,
    "packet:xdp_pkt_end_gt": _PRINT,
    "packet:xdp_pkt_jge": _PRINT,
    "packet:xdp_pkt_jle": _PRINT,
    "packet:xdp_pkt_jlt": _PRINT,
    "packet:xdp_pkt_meta_check": _PRINT,
    "packet:xdp_pkt_spill_keeps_range": _PRINT + '; ' + _LIVE_STACK,
    "packet:xdp_pkt_var_offset": _PRINT,
    "packet:xdp_pkt_write": _PRINT,
    "packet:xdp_pkt_wrong_branch": _PRINT,
    "registers:init_in_both_branches": _PRINT,
    "registers:uninit_in_one_branch": _PRINT,
    "ringbuf:ringbuf_reserve_in_loop": _PRINT,
    "ringbuf:ringbuf_reserve_wrong_map": _PRECISION,
    "stack:spill_fill_ctx": _LIVE_STACK,
    "stack:spill_fill_stack_ptr": _LIVE_STACK,
    "stack:spill_scalar_fill_keeps_value": _LIVE_STACK,
    "stack:spill_scalar_u32_fill_u32": _LIVE_STACK,
    "stack:stack_64bit_read_of_two_u32": _PRECISION,
    "stack:stack_atomic_add_ok": _LIVE_STACK,
    "stack:stack_atomic_cmpxchg_ok": _PRINT + '; ' + _LIVE_STACK,
    "stack:stack_atomic_fetch_ok": _PRINT + '; ' + _LIVE_STACK,
    "stack:stack_atomic_on_spilled_ptr": _LIVE_STACK,
    "stack:stack_atomic_xchg_w_ok": _PRINT + '; ' + _LIVE_STACK,
    "stack:stack_dead_slot_pruned": _PRINT + '; ' + _LIVE_STACK,
    "stack:stack_live_slot_still_compared": _PRINT + '; ' + _LIVE_STACK,
    "stack:stack_lowest_slot_ok": _LIVE_STACK,
    "stack:stack_partial_write_keeps_slot_live": _PRECISION,
    "stack:stack_ptr_through_r1_copy": _LIVE_STACK,
    "stack:stack_st_imm_then_read": _LIVE_STACK,
    "stack:stack_u8_any_offset_ok": _PRECISION,
    "stack:stack_uninit_read_priv_ok": _LIVE_STACK,
    "stack:stack_var_offset_read_priv": _LIVE_STACK,
    "stack:stack_var_offset_write_priv": _PRINT,
    "stack:stack_zero_read_is_const": _PRECISION,
    "structure:branch_both_exit": _PRINT,
    "structure:diamond": _PRINT,
    "structure:fall_through_cond_both": _PRINT,
    "structure:gotol_forward": _PRINT,
    "structure:jmp32_out_of_range": _PRINT,
    "structure:jump_into_ldimm64_middle": _PRINT,
    "structure:jump_out_of_range_backward": _PRINT,
    "structure:jump_out_of_range_cond": _PRINT,
    "structure:jump_out_of_range_forward": _PRINT,
    "structure:last_insn_not_exit": _PRINT,
    "structure:ldimm64_map_idx_without_fd_array": _PRINT,
    "structure:ldimm64_unknown_pseudo": _PRINT,
    "structure:ldx_reserved_imm": _PRINT,
    "structure:map_fd_bad": _PRINT,
    "structure:self_loop_never_exits": _PRINT,
    "structure:unknown_opcode_alu": _PRINT,
    "structure:unreachable_after_exit": _PRINT,
    "structure:unreachable_middle": _PRINT,
    "tracepoint:tp_map_update_from_record": _LIVE_STACK,
    "tracepoint:tp_perf_event_output": _LIVE_STACK,
    "tracepoint:tp_probe_read": _PRINT,

}


@pytest.mark.parametrize("case", params(CASES))
def test_same_level2_log_as_kernel(case):
    """The whole level-2 log is Linux's too, precision backtracking (mark_precise) included."""
    require_kernel()
    if not case.privileged or case.kernel:
        pytest.skip("not comparable with the kernel (see the corpus entry)")
    if case.id in LOG2_DIFFERENCES:
        pytest.skip(LOG2_DIFFERENCES[case.id])
    _, _, klog = kernel_verdict(case, log_level=2)
    assert _normalise(verify_case(case, 2).log) == _normalise(klog)
