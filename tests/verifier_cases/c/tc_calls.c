/* tc: skb fields, helpers, bpf-to-bpf calls, a loop over a stack buffer. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 16);
} stats SEC(".maps");

static __attribute__((noinline)) __u64 mix(__u64 a, __u64 b)
{
	return (a * 31) ^ (b >> 3);
}

static __attribute__((noinline)) int bump(__u32 slot, __u64 by)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &slot);
	if (!v)
		return 0;
	*v += by;
	return 1;
}

SEC("tc")
int tc_main(struct __sk_buff *skb)
{
	__u8 buf[32];
	if (bpf_skb_load_bytes(skb, 0, buf, sizeof(buf)) < 0)
		return TC_ACT_OK;
	__u64 h = 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < 32; i++)
		h = mix(h, buf[i]);
	bump(h & 15, skb->len);
	skb->mark = (__u32)h;
	skb->cb[0] = skb->protocol;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
