/* Multiboot v1 entry, a flat GDT and the interrupt stubs. */

	.set MB_MAGIC, 0x1BADB002
	.set MB_FLAGS, 0x00000003	/* page-align modules, give memory info */

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .bss
	.align 16
stack_bottom:
	.skip 65536
stack_top:

	.section .rodata
	.align 8
gdt:
	.quad 0
	.quad 0x00CF9A000000FFFF	/* 0x08: code, flat 4 GiB */
	.quad 0x00CF92000000FFFF	/* 0x10: data, flat 4 GiB */
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

	.section .text
	.global _start
_start:
	cli
	mov $stack_top, %esp
	mov %eax, %esi			/* multiboot magic */
	mov %ebx, %edi			/* multiboot info */
	cld
	xor %eax, %eax			/* zero .bss: loaders need not */
	mov $__bss_start, %edx
1:	cmp $__bss_end, %edx
	jae 2f
	movb %al, (%edx)
	inc %edx
	jmp 1b
2:
	lgdt gdt_desc
	ljmp $0x08, $3f
3:	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %fs
	mov %ax, %gs
	mov %ax, %ss
	mov $stack_top, %esp
	cld
	push %edi
	push %esi
	call guest_main
4:	cli
	hlt
	jmp 4b

/* CPU exceptions: push the vector and report; the guest stops there. */
	.macro exc_stub n
exc_stub_\n:
	push $\n
	jmp exc_common
	.endm

	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	exc_stub \n
	.endr

exc_common:
	push %esp			/* frame: vector, [error code], eip, cs, eflags */
	call guest_fault
3:	cli
	hlt
	jmp 3b

	.global irq_timer_stub
irq_timer_stub:				/* IRQ0: the wake-up tick, only acknowledged */
	push %eax
	mov $0x20, %al
	out %al, $0x20
	pop %eax
	iret

	.global irq_other_stub
irq_other_stub:				/* anything else (masked, spurious): EOI both PICs */
	push %eax
	mov $0x20, %al
	out %al, $0xA0
	out %al, $0x20
	pop %eax
	iret

	.global irq_ignore_stub
irq_ignore_stub:			/* spurious IRQ7 and unused vectors: no EOI */
	iret

	.section .rodata
	.align 4
	.global exc_stubs
exc_stubs:
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.long exc_stub_\n
	.endr

	.section .note.GNU-stack, "", @progbits
