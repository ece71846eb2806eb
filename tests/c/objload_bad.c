/* One good program, one the verifier rejects, a pinned map, a prog array naming both. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bad_counts SEC(".maps");

int good(struct __sk_buff *skb);
int forgot_null_check(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [0] = (void *)&good, [1] = (void *)&forgot_null_check },
};

SEC("socket")
int good(struct __sk_buff *skb)
{
	return 0;
}

SEC("socket")
int forgot_null_check(struct __sk_buff *skb)
{
	__u32 key = skb->len;
	__u64 *v = bpf_map_lookup_elem(&bad_counts, &key);

	return *v;
}

char LICENSE[] SEC("license") = "GPL";
