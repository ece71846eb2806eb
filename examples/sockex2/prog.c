/* sockex2: a flow dissector feeding a hash map of flows.
 *
 * For every IPv4 or IPv6 packet (also inside one 802.1Q/802.1ad tag) the
 * filter builds the 5-tuple (addresses, protocol, ports) and counts the
 * flow's packets and bytes.  It reads the packet with bpf_skb_load_bytes,
 * from the network header on (see sockex1 for why), skips IPv4 options
 * and the IPv6 fragment header, and leaves the ports of non-first
 * fragments at 0 since those fragments do not carry them.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "flow.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows SEC(".maps");

struct frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

/* Fills the ports (or ICMP type/code) of protocol proto found at off. */
static __always_inline void l4(struct __sk_buff *skb, __u32 off, struct flow_key *k)
{
	__u16 ports[2];

	if (k->proto == IPPROTO_TCP || k->proto == IPPROTO_UDP) {
		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) == 0) {
			k->sport = bpf_ntohs(ports[0]);
			k->dport = bpf_ntohs(ports[1]);
		}
	} else if (k->proto == IPPROTO_ICMP || k->proto == IPPROTO_ICMPV6) {
		__u8 tc[2];

		if (bpf_skb_load_bytes(skb, off, tc, sizeof(tc)) == 0) {
			k->sport = tc[0];
			k->dport = tc[1];
		}
	}
}

static __always_inline int dissect(struct __sk_buff *skb, struct flow_key *k)
{
	__u32 off = 0;
	__u16 proto = bpf_ntohs(skb->protocol);

	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
		__be16 inner;

		if (bpf_skb_load_bytes(skb, 2, &inner, sizeof(inner)))
			return -1;
		proto = bpf_ntohs(inner);
		off = 4;
	}
	if (proto == ETH_P_IP) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) || ip.ihl < 5)
			return -1;
		k->src[10] = k->src[11] = 0xff;
		k->dst[10] = k->dst[11] = 0xff;
		__builtin_memcpy(&k->src[12], &ip.saddr, 4);
		__builtin_memcpy(&k->dst[12], &ip.daddr, 4);
		k->proto = ip.protocol;
		if (ip.frag_off & bpf_htons(0x1fff))
			return 0;
		l4(skb, off + ip.ihl * 4, k);
		return 0;
	}
	if (proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return -1;
		__builtin_memcpy(k->src, &ip6.saddr, 16);
		__builtin_memcpy(k->dst, &ip6.daddr, 16);
		k->proto = ip6.nexthdr;
		off += sizeof(ip6);
		if (k->proto == IPPROTO_FRAGMENT_HDR) {
			struct frag_hdr fh;

			if (bpf_skb_load_bytes(skb, off, &fh, sizeof(fh)))
				return -1;
			k->proto = fh.nexthdr;
			off += sizeof(fh);
			if (fh.frag_off & bpf_htons(0xfff8))
				return 0;
		}
		l4(skb, off, k);
		return 0;
	}
	return -1;
}

SEC("socket")
int flow_dissector(struct __sk_buff *skb)
{
	struct flow_key k = {};
	struct flow_stats *s;

	if (dissect(skb, &k))
		return 0;
	s = bpf_map_lookup_elem(&flows, &k);
	if (s) {
		__sync_fetch_and_add(&s->packets, 1);
		__sync_fetch_and_add(&s->bytes, skb->len);
	} else {
		struct flow_stats first = { .packets = 1, .bytes = skb->len };

		bpf_map_update_elem(&flows, &k, &first, BPF_NOEXIST);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
