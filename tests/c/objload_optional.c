/* SEC("?...") programs are not loaded by default; their prog array slot stays empty. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int first(struct xdp_md *ctx);
int later(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [0] = (void *)&first, [1] = (void *)&later },
};

SEC("xdp")
int first(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jumps, 1);
	return XDP_PASS;
}

SEC("?xdp")
int later(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
