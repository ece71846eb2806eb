/* String literals (.rodata.str1.1), const arrays and a static const table in .rodata. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static const int table[4] = { 3, 1, 4, 1 };
char buf[32];

SEC("socket") int strings(struct __sk_buff *skb)
{
	bpf_printk("len=%d", skb->len);
	bpf_printk("mark=%d table=%d", skb->mark, table[skb->len & 3]);
	__builtin_memcpy(buf, "hello from pybpf", 17);
	return table[skb->len & 3];
}

char _license[] SEC("license") = "GPL";
