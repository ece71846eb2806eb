/* Legacy style: struct bpf_map_def in SEC("maps"), LD_ABS packet loads, a bounded loop. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def_legacy {
	unsigned int type, key_size, value_size, max_entries, map_flags;
};

struct bpf_map_def_legacy SEC("maps") proto_count = {
	.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 256,
};

unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");

SEC("socket")
int count_protocols(struct __sk_buff *skb)
{
	__u32 key = load_byte(skb, 23);
	__u64 *v = bpf_map_lookup_elem(&proto_count, &key);
	if (v)
		__sync_fetch_and_add(v, skb->len);
	__u32 sum = 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < 8; i++)
		sum += load_half(skb, 14 + 2 * i);
	return sum & 1 ? -1 : 0;
}

char _license[] SEC("license") = "GPL";
