/* sockex1: how many bytes each IP protocol carries.
 *
 * A socket filter that reads the IPv4 protocol field (or the IPv6 next
 * header) with the classic packet-load instruction and adds the packet's
 * length to that protocol's slot of an array.  Like a SOCK_DGRAM packet
 * socket, BPF_PROG_TEST_RUN (the kernel's and pybpf's) hands a socket
 * filter its packet from the network header on, so offsets here are
 * relative to the IP header and the protocol comes from skb->protocol.
 * The filter returns 0: it watches, and keeps nothing for the socket.
 */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} proto_bytes SEC(".maps");

/* LD_ABS: one byte at a fixed offset from the start of the packet. */
unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");

SEC("socket")
int count_bytes(struct __sk_buff *skb)
{
	__u32 proto;
	__u64 *bytes;

	if (skb->protocol == bpf_htons(ETH_P_IP))
		proto = load_byte(skb, offsetof(struct iphdr, protocol));
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		proto = load_byte(skb, offsetof(struct ipv6hdr, nexthdr));
	else
		return 0;

	bytes = bpf_map_lookup_elem(&proto_bytes, &proto);
	if (bytes)
		__sync_fetch_and_add(bytes, skb->len);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
