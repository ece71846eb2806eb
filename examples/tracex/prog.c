/* tracex: a log2 histogram of the sizes a probed function is asked for.
 *
 * A kprobe program: pybpf fires it each time the probed Python function
 * runs, with the call's integer arguments in the registers of the x86-64
 * calling convention (first argument in di), as a kprobe on a C function
 * would see them.  Slot 0 counts size 0; slot k counts sizes in
 * [2^(k-1), 2^k).  Calls and their total size are kept in globals (.bss).
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define SLOTS 65

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} sizes SEC(".maps");

__u64 calls;
__u64 total_bytes;

static __always_inline __u32 log2_floor(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

SEC("kprobe/allocate")
int trace_allocate(struct pt_regs *ctx)
{
	__u64 size = PT_REGS_PARM1(ctx);
	__u32 slot = size ? log2_floor(size) + 1 : 0;
	__u64 *n = bpf_map_lookup_elem(&sizes, &slot);

	if (n)
		__sync_fetch_and_add(n, 1);
	__sync_fetch_and_add(&calls, 1);
	__sync_fetch_and_add(&total_bytes, size);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
