/* The same pinned name as objload_pinned.c, but 128 entries: must not be reused. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shared_counts SEC(".maps");

SEC("socket")
int count(struct __sk_buff *skb)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&shared_counts, &key) != 0;
}

char LICENSE[] SEC("license") = "GPL";
