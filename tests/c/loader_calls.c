/* bpf-to-bpf calls: static and global subprograms, nested, shared between
 * programs, several programs per section and per object, a loop, and a
 * callback passed by address (BPF_PSEUDO_FUNC). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int scale = 3;

static __attribute__((noinline)) int leaf(int x)
{
	return x * scale + 1;
}

static __attribute__((noinline)) int middle(int x)
{
	return leaf(x) + leaf(x + 1);
}

__attribute__((noinline)) int global_sub(int x)
{
	int s = 0;
	for (int i = 0; i < (x & 15); i++)
		s += middle(i);
	return s;
}

static int cb(__u32 idx, void *ctx)
{
	*(long *)ctx += idx;
	return 0;
}

SEC("tc") int first(struct __sk_buff *skb)
{
	return global_sub(skb->len) & 1;
}

SEC("tc") int second(struct __sk_buff *skb)
{
	return leaf(skb->mark);
}

SEC("tc") int third(struct __sk_buff *skb)
{
	long sum = 0;
	bpf_loop(8, cb, &sum, 0);
	return middle(sum);
}

SEC("xdp") int only_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
unsigned int _version SEC("version") = 0x060c00;
