/* The verifier's error is in a bpf-to-bpf callee: the source line must be the callee's. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} vals SEC(".maps");

static __attribute__((noinline)) int bump(__u32 k)
{
	__u64 *v = bpf_map_lookup_elem(&vals, &k);

	return *v + 1;
}

SEC("socket")
int entry(struct __sk_buff *skb)
{
	return bump(skb->len);
}

char LICENSE[] SEC("license") = "GPL";
