// Callbacks: bpf_loop and bpf_for_each_map_elem with static callback functions.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} flows SEC(".maps");

struct loop_ctx {
	__u64 sum;
	__u32 limit;
};

static long add_index(__u32 index, void *data)
{
	struct loop_ctx *c = data;

	if (index >= c->limit)
		return 1;
	c->sum += index;
	return 0;
}

static long bump_count(__u32 index, void *data)
{
	__u32 key = index & 15;
	__u64 *v = bpf_map_lookup_elem(&counts, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}

static long sum_flow(void *map, __u32 *key, __u64 *value, void *data)
{
	struct loop_ctx *c = data;

	c->sum += *value + *key;
	if (c->sum > 1000000)
		return 1;
	return 0;
}

SEC("socket")
int loop_sum(struct __sk_buff *skb)
{
	struct loop_ctx c = { .sum = 0, .limit = skb->len & 0xff };

	bpf_loop(100, add_index, &c, 0);
	return c.sum & 0xffff;
}

SEC("tc")
int loop_counts(struct __sk_buff *skb)
{
	bpf_loop(skb->len, bump_count, NULL, 0);
	return 0;
}

SEC("xdp")
int each_flow(struct xdp_md *ctx)
{
	struct loop_ctx c = { .sum = 0, .limit = 0 };

	bpf_for_each_map_elem(&flows, sum_flow, &c, 0);
	return c.sum > 100 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
