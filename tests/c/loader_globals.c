/* Global variables: .data, .rodata, .bss, a custom .data.* section and string literals. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int counter = 41;
static long hidden = -2;
const volatile __u32 threshold = 1000;
const volatile char tag[8] = "pybpf";
__u64 hits;
static __u32 misses;
int custom_val SEC(".data.custom") = 0x1234;

SEC("xdp") int globals(struct xdp_md *ctx)
{
	counter++;
	hidden--;
	custom_val ^= 1;
	if (ctx->data_end - ctx->data > threshold + tag[1]) {
		hits++;
		return XDP_PASS;
	}
	misses++;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
