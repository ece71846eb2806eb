/* tc_classifier: sort traffic into four classes, mark it with DSCP, count it.
 *
 * A direct-action tc program.  It parses Ethernet (one VLAN tag allowed),
 * IPv4 or IPv6, and the TCP/UDP ports of first fragments, then picks a
 * class: control (ICMP, ICMPv6), interactive (SSH, DNS, NTP), web (HTTP,
 * HTTPS, QUIC) or bulk (the rest).  It writes the class's DSCP into the
 * IPv4 TOS byte (fixing the header checksum incrementally) or the IPv6
 * traffic class, puts the class in skb->priority for the qdisc, and counts
 * packets and bytes per class.  Unicast IPv4 packets whose TTL is 1 or 0
 * would die at the next router, so they are shot here (TC_ACT_SHOT).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

enum class { CONTROL, INTERACTIVE, WEB, BULK, NCLASSES };

struct class_stats {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NCLASSES);
	__type(key, __u32);
	__type(value, struct class_stats);
} classes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ttl_drops SEC(".maps");

/* DSCP per class: CS6 (network control), EF, AF21, CS1 (lower effort). */
static const __u8 dscp[NCLASSES] = { 48, 46, 18, 8 };

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

static __always_inline __u16 csum_replace(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + (__u32)new;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static __always_inline __u32 by_port(__u16 port)
{
	switch (port) {
	case 22:
	case 53:
	case 123:
		return INTERACTIVE;
	case 80:
	case 443:
		return WEB;
	}
	return BULK;
}

static __always_inline __u32 by_ports(void *l4, void *end, __u8 proto)
{
	__be16 *ports = l4;
	__u32 c;

	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		return CONTROL;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return BULK;
	if ((void *)(ports + 2) > end)
		return BULK;
	c = by_port(bpf_ntohs(ports[1]));
	return c != BULK ? c : by_port(bpf_ntohs(ports[0]));
}

SEC("tc")
int classify(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct class_stats *st;
	__u32 cls = BULK;
	__u16 proto;
	void *l3;

	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	l3 = eth + 1;
	proto = bpf_ntohs(eth->h_proto);
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > end)
			return TC_ACT_OK;
		proto = bpf_ntohs(vh->proto);
		l3 = vh + 1;
	}
	if (proto == ETH_P_IP) {
		struct iphdr *ip = l3;
		__u16 old;

		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return TC_ACT_OK;
		if (ip->ttl <= 1 && (ip->daddr & bpf_htonl(0xf0000000)) != bpf_htonl(0xe0000000)) {
			__u32 zero = 0;
			__u64 *n = bpf_map_lookup_elem(&ttl_drops, &zero);

			if (n)
				__sync_fetch_and_add(n, 1);
			return TC_ACT_SHOT;
		}
		if (!(ip->frag_off & bpf_htons(0x1fff)))
			cls = by_ports((void *)ip + ip->ihl * 4, end, ip->protocol);
		else
			cls = ip->protocol == IPPROTO_ICMP ? CONTROL : BULK;
		old = *(__u16 *)ip;
		ip->tos = (dscp[cls] << 2) | (ip->tos & 3);
		ip->check = csum_replace(ip->check, old, *(__u16 *)ip);
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = l3;
		__u8 nexthdr;
		void *l4;

		if ((void *)(ip6 + 1) > end)
			return TC_ACT_OK;
		nexthdr = ip6->nexthdr;
		l4 = ip6 + 1;
		if (nexthdr == 44) {		/* fragment header */
			__u8 *fh = l4;

			if ((void *)(fh + 8) > end)
				return TC_ACT_OK;
			nexthdr = fh[0];
			l4 = fh + 8;
			if ((fh[2] << 8 | fh[3]) & 0xfff8)	/* no ports in later fragments */
				nexthdr = nexthdr == IPPROTO_ICMPV6 ? nexthdr : IPPROTO_NONE;
		}
		cls = by_ports(l4, end, nexthdr);
		/* Traffic class straddles the first two bytes: version(4) tc(8) flow(4..) */
		ip6->priority = dscp[cls] >> 2;
		ip6->flow_lbl[0] = (ip6->flow_lbl[0] & 0x3f) | ((dscp[cls] & 3) << 6);
	} else {
		return TC_ACT_OK;
	}
	skb->priority = cls;
	st = bpf_map_lookup_elem(&classes, &cls);
	if (st) {
		__sync_fetch_and_add(&st->packets, 1);
		__sync_fetch_and_add(&st->bytes, skb->len);
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
