// libvirt domain XML in the shape `virsh dumpxml` prints for nova instances, for tests. Not real deployments.

/**
 * A devstack-style instance booted by kernel and ramdisk: qcow2 root disk, nova's
 * config drive on IDE, two Neutron ports on per-port qbr bridges, a file serial
 * console and a pty one, VNC, cirrus video, a virtio balloon.
 */
export const NOVA_KERNEL_BOOT_XML = `<domain type='qemu' id='7'>
  <name>instance-0000002a</name>
  <uuid>5b0e8a4c-1f23-4e6d-9a7b-2c4d6e8f0a1b</uuid>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:package version="27.1.0"/>
      <nova:name>web-1</nova:name>
      <nova:flavor name="m1.small">
        <nova:memory>512</nova:memory>
        <nova:disk>1</nova:disk>
        <nova:vcpus>1</nova:vcpus>
      </nova:flavor>
      <nova:root type="image" uuid="0c9d3f2e-7a51-4b6e-8d2f-1e3a5c7b9d0f"/>
    </nova:instance>
  </metadata>
  <memory unit='KiB'>524288</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <cputune>
    <shares>1024</shares>
  </cputune>
  <resource>
    <partition>/machine</partition>
  </resource>
  <sysinfo type='smbios'>
    <system>
      <entry name='manufacturer'>OpenStack Foundation</entry>
      <entry name='product'>OpenStack Nova</entry>
      <entry name='version'>27.1.0</entry>
      <entry name='uuid'>5b0e8a4c-1f23-4e6d-9a7b-2c4d6e8f0a1b</entry>
      <entry name='family'>Virtual Machine</entry>
    </system>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/var/lib/nova/instances/5b0e8a4c-1f23-4e6d-9a7b-2c4d6e8f0a1b/kernel</kernel>
    <initrd>/var/lib/nova/instances/5b0e8a4c-1f23-4e6d-9a7b-2c4d6e8f0a1b/ramdisk</initrd>
    <cmdline>root=/dev/vda console=tty0 console=ttyS0 no_timer_check</cmdline>
    <boot dev='hd'/>
    <smbios mode='sysinfo'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu>
    <topology sockets='1' cores='1' threads='1'/>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/nova/instances/5b0e8a4c-1f23-4e6d-9a7b-2c4d6e8f0a1b/disk'/>
      <backingStore type='file' index='1'>
        <format type='raw'/>
        <source file='/var/lib/nova/instances/_base/4b8f2a'/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x06' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw' cache='none'/>
      <source file='/var/lib/nova/instances/5b0e8a4c-1f23-4e6d-9a7b-2c4d6e8f0a1b/disk.config'/>
      <target dev='hdd' bus='ide'/>
      <readonly/>
      <address type='drive' controller='0' bus='1' target='0' unit='1'/>
    </disk>
    <controller type='usb' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>
    </controller>
    <controller type='pci' index='0' model='pci-root'/>
    <controller type='ide' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/>
    </controller>
    <interface type='bridge'>
      <mac address='fa:16:3e:12:ab:01'/>
      <source bridge='qbr0c1d2e3f-4a'/>
      <target dev='tap0c1d2e3f-4a'/>
      <model type='virtio'/>
      <driver name='qemu'/>
      <mtu size='1450'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    <interface type='bridge'>
      <mac address='FA:16:3E:12:AB:02'/>
      <source bridge='qbr5a6b7c8d-9e'/>
      <target dev='tap5a6b7c8d-9e'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </interface>
    <serial type='file'>
      <source path='/var/lib/nova/instances/5b0e8a4c-1f23-4e6d-9a7b-2c4d6e8f0a1b/console.log'/>
      <target port='0'/>
    </serial>
    <serial type='pty'>
      <source path='/dev/pts/3'/>
      <target port='1'/>
    </serial>
    <console type='file'>
      <source path='/var/lib/nova/instances/5b0e8a4c-1f23-4e6d-9a7b-2c4d6e8f0a1b/console.log'/>
      <target type='serial' port='0'/>
    </console>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <graphics type='vnc' port='5900' autoport='yes' listen='127.0.0.1' keymap='en-us'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video>
      <model type='cirrus' vram='16384' heads='1' primary='yes'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </video>
    <memballoon model='virtio'>
      <stats period='10'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>
    </memballoon>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'/>
</domain>
`;

/**
 * A production-style instance booted from its disk: a distribution's machine
 * type, a custom CPU model with extra features, a raw root disk on shared
 * storage and a Ceph volume, an OVS hybrid port and a vhost-user port, a USB
 * tablet, an RNG, the guest agent channel, a smaller balloon target.
 */
export const NOVA_DISK_BOOT_XML = `<?xml version="1.0" encoding="UTF-8"?>
<!-- virsh dumpxml instance-00000101 -->
<domain type='kvm'>
  <name>instance-00000101</name>
  <uuid>9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a</uuid>
  <memory unit='GiB'>2</memory>
  <currentMemory unit='MiB'>1536</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-i440fx-rhel7.6.0'>hvm</type>
    <boot dev='hd'/>
    <smbios mode='sysinfo'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <vmport state='off'/>
  </features>
  <cpu mode='custom' match='exact' check='full'>
    <model fallback='forbid'>Haswell-noTSX-IBRS</model>
    <topology sockets='2' cores='1' threads='1'/>
    <feature policy='require' name='vme'/>
    <feature policy='disable' name='hle'/>
  </cpu>
  <clock offset='utc'>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='hpet' present='no'/>
  </clock>
  <devices>
    <emulator>/usr/libexec/qemu-kvm</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source file='/var/lib/nova/instances/9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a/disk'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='writeback' discard='unmap'/>
      <auth username='cinder'>
        <secret type='ceph' uuid='1a2b3c4d-0000-4000-8000-00000000c1d3'/>
      </auth>
      <source protocol='rbd' name='volumes/volume-3c2b1a9f'>
        <host name='198.18.9.1' port='6789'/>
      </source>
      <target dev='vdb' bus='virtio'/>
      <serial>3c2b1a9f</serial>
    </disk>
    <controller type='usb' index='0' model='piix3-uhci'/>
    <controller type='pci' index='0' model='pci-root'/>
    <interface type='bridge'>
      <mac address='fa:16:3e:3e:b0:96'/>
      <source bridge='br-int'/>
      <virtualport type='openvswitch'>
        <parameters interfaceid='7d6c5b4a-0000-4000-8000-000000000001'/>
      </virtualport>
      <target dev='tap7d6c5b4a-00'/>
      <model type='virtio'/>
    </interface>
    <interface type='vhostuser'>
      <mac address='fa:16:3e:3e:b0:97'/>
      <source type='unix' path='/var/run/openvswitch/vhu7d6c5b4a-01' mode='server'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <log file='/var/lib/nova/instances/9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a/console.log' append='off'/>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <log file='/var/lib/nova/instances/9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a/console.log' append='off'/>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <input type='tablet' bus='usb'/>
    <input type='mouse' bus='ps2'/>
    <graphics type='spice' autoport='yes'/>
    <video>
      <model type='qxl' ram='65536' vram='65536' heads='1'/>
    </video>
    <memballoon model='virtio'/>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
</domain>
`;
