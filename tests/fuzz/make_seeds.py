#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (tests/fuzz/corpus/<target>/), deterministically.

    python3 tests/fuzz/make_seeds.py

Sources: the JSON fixtures in tests/k8s/data, and samples transcribed from the references:
kubernetes-api.md §2.2 (list shape), §3 (watch events: ADDED/MODIFIED/DELETED, the 410 ERROR
capture, bookmarks and the initial-events-end bookmark), §6.2 (kubeconfig, kubeadm's JSON
form), §7 (object shapes); kube-proxy-ipvs.md §9.1/§9.2 (config fields, flags); netlink
replies built as the kernel builds them (ip_vs_genl_fill_*), like tests/ipvs/ipvs_codec_test.cpp.
Each seed starts with the option bytes its target reads (see the target's header comment).
"""
import base64
import json
import os
import shutil
import socket
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, '..', 'k8s', 'data')
CORPUS = os.path.join(HERE, 'corpus')


def fixture(name):
    with open(os.path.join(DATA, name), 'rb') as f:
        return json.loads(f.read())


def compact(v):
    return json.dumps(v, separators=(',', ':')).encode()


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


SERVICES = ['service-clusterip.json', 'service-dualstack.json', 'service-externalname.json',
            'service-headless.json', 'service-loadbalancer.json',
            'service-nodeport-no-clusterip.json']
SLICES = ['endpointslice-fqdn.json', 'endpointslice-hints-v6.json',
          'endpointslice-nil-conditions.json', 'endpointslice-terminating.json']
NODES = ['node-draining.json', 'node-empty-spec.json']
KINDS = [('Service', 'v1', SERVICES), ('EndpointSlice', 'discovery.k8s.io/v1', SLICES),
         ('Node', 'v1', NODES)]

# kubernetes-api.md §7.1-7.3, with every field a proxy reads.
REF_SERVICE = {
    'kind': 'Service', 'apiVersion': 'v1',
    'metadata': {'name': 'web', 'namespace': 'default', 'uid': 'u-1', 'resourceVersion': '7',
                 'labels': {'app': 'web'}, 'annotations': {'a': 'b'}},
    'spec': {'type': 'LoadBalancer', 'selector': {'app': 'web'}, 'clusterIP': '10.96.0.10',
             'clusterIPs': ['10.96.0.10', 'fd00:10:96::a'], 'ipFamilies': ['IPv4', 'IPv6'],
             'ipFamilyPolicy': 'PreferDualStack',
             'ports': [{'name': 'http', 'protocol': 'TCP', 'port': 80, 'targetPort': 8080,
                        'nodePort': 30080},
                       {'name': 'dns', 'protocol': 'UDP', 'port': 53, 'targetPort': 'dns'},
                       {'name': 'sctp', 'protocol': 'SCTP', 'port': 9000}],
             'externalIPs': ['198.51.100.7'], 'loadBalancerSourceRanges': ['203.0.113.0/24'],
             'externalTrafficPolicy': 'Local', 'internalTrafficPolicy': 'Cluster',
             'healthCheckNodePort': 32001, 'sessionAffinity': 'ClientIP',
             'sessionAffinityConfig': {'clientIP': {'timeoutSeconds': 10800}}},
    'status': {'loadBalancer': {'ingress': [{'ip': '192.0.2.1', 'ipMode': 'VIP'},
                                            {'ip': '192.0.2.2', 'ipMode': 'Proxy'},
                                            {'hostname': 'lb.example.com'}]}},
}
REF_SLICE = {
    'kind': 'EndpointSlice', 'apiVersion': 'discovery.k8s.io/v1',
    'metadata': {'name': 'web-abc', 'namespace': 'default', 'resourceVersion': '8',
                 'labels': {'kubernetes.io/service-name': 'web',
                            'endpointslice.kubernetes.io/managed-by':
                                'endpointslice-controller.k8s.io'},
                 'annotations': {'endpoints.kubernetes.io/last-change-trigger-time':
                                 '2022-02-17T21:46:30Z'}},
    'addressType': 'IPv4',
    'endpoints': [{'addresses': ['10.244.1.7'],
                   'conditions': {'ready': True, 'serving': True, 'terminating': False},
                   'nodeName': 'node-1', 'zone': 'zone-a',
                   'hints': {'forZones': [{'name': 'zone-a'}], 'forNodes': [{'name': 'node-1'}]}},
                  {'addresses': ['10.244.2.9'], 'conditions': {'ready': False,
                                                               'serving': True,
                                                               'terminating': True}}],
    'ports': [{'name': 'http', 'protocol': 'TCP', 'port': 8080},
              {'name': 'dns', 'protocol': 'UDP', 'port': 53}],
}
REF_NODE = {
    'kind': 'Node', 'apiVersion': 'v1',
    'metadata': {'name': 'node-1', 'labels': {'topology.kubernetes.io/zone': 'zone-a',
                                              'kubernetes.io/hostname': 'node-1'}},
    'spec': {'podCIDR': '10.244.1.0/24', 'podCIDRs': ['10.244.1.0/24', 'fd00:10:244:1::/64'],
             'taints': [{'key': 'ToBeDeletedByClusterAutoscaler', 'effect': 'NoSchedule'}]},
    'status': {'addresses': [{'type': 'InternalIP', 'address': '192.168.1.10'},
                             {'type': 'InternalIP', 'address': 'fd00::10'},
                             {'type': 'Hostname', 'address': 'node-1'}]},
}
REFS = [REF_SERVICE, REF_SLICE, REF_NODE]

# kubernetes-api.md §3.4: the capture of a 410 in-band ERROR event.
ERROR_410 = (b'{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},'
             b'"status":"Failure","message":"too old resource version: 1 (260)",'
             b'"reason":"Expired","code":410}}\n')


def list_body(kind, api, items, cont=''):
    meta = {'resourceVersion': '10245'}
    if cont:
        meta['continue'] = cont
        meta['remainingItemCount'] = 12
    return compact({'kind': kind + 'List', 'apiVersion': api, 'metadata': meta, 'items': items})


def strip_type(o):
    # Items in a list response normally carry no kind/apiVersion (§2.2).
    return {k: v for k, v in o.items() if k not in ('kind', 'apiVersion')}


def event(t, o):
    return compact({'type': t, 'object': o}) + b'\n'


def bookmark(kind, api, rv, end=False):
    meta = {'resourceVersion': rv, 'creationTimestamp': None}
    if end:
        meta['annotations'] = {'k8s.io/initial-events-end': 'true'}
    return event('BOOKMARK', {'kind': kind, 'apiVersion': api, 'metadata': meta, 'spec': {}})


def objects_seeds():
    t = 'fuzz_objects'
    for k, (kind, api, files) in enumerate(KINDS):
        items = []
        for f in files:
            o = fixture(f)
            write(t, f.replace('.json', ''), bytes([k, 0]) + compact(o))
            items.append(strip_type(o))
        items.append(strip_type(REFS[k]))
        write(t, 'ref-' + kind.lower(), bytes([k, 1]) + compact(REFS[k]))
        write(t, 'list-' + kind.lower(), bytes([4 | k, 2]) + list_body(kind, api, items, 'tok'))
        write(t, 'list-empty-' + kind.lower(), bytes([4 | k, 3]) + list_body(kind, api, []))
    write(t, 'list-null-items', bytes([4 | 3, 4]) +
          b'{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"5"},'
          b'"items":null}')
    write(t, 'status-410', bytes([3, 5]) + compact(fixture('status-410.json')))


def watch_seeds():
    t = 'fuzz_watch_stream'
    for k, (kind, api, files) in enumerate(KINDS):
        objs = [fixture(f) for f in files] + [REFS[k]]
        for o in objs:
            o.setdefault('kind', kind)
            o.setdefault('apiVersion', api)
        first = objs[0]
        deleted = json.loads(json.dumps(first))
        deleted['metadata']['resourceVersion'] = '999'
        body = b''.join(event('ADDED', o) for o in objs)
        body += event('MODIFIED', objs[-1]) + event('DELETED', deleted)
        body += bookmark(kind, api, '1000')
        # list+watch: events, a bookmark, then the 410 capture.
        write(t, 'watch-' + kind.lower(), bytes([k, 1, 255]) + body + ERROR_410)
        # The same stream split with \r\n line ends and ended by a reset.
        write(t, 'watch-crlf-reset-' + kind.lower(),
              bytes([k | 16, 2, 64]) + body.replace(b'\n', b'\r\n'))
        # watch-list: ADDED events, then the initial-events-end bookmark, then a change.
        wl = b''.join(event('ADDED', o) for o in objs) + bookmark(kind, api, '500', True)
        wl += event('DELETED', deleted)
        write(t, 'watchlist-' + kind.lower(), bytes([k | 4, 3, 200]) + wl)
        # The body is the list response instead (list+watch).
        write(t, 'list-' + kind.lower(), bytes([k | 8, 4, 128]) +
              list_body(kind, api, [strip_type(o) for o in objs]))
    write(t, 'bookmark-fixture', bytes([0, 5, 255]) + event('BOOKMARK', fixture('bookmark.json')))
    write(t, 'partial-line', bytes([0, 6, 32]) + event('ADDED', REF_SERVICE)[:-40])


def kubeconfig_seeds():
    t = 'fuzz_kubeconfig'
    ca = base64.b64encode(b'-----BEGIN CERTIFICATE-----\nPEM-CA\n').decode()
    cert = base64.b64encode(b'PEM-CERT').decode()
    key = base64.b64encode(b'PEM-KEY').decode()
    yaml_full = f"""apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://other:1
- name: c1
  cluster:
    server: https://api.example.com:6443/k8s/
    certificate-authority-data: {ca}
    tls-server-name: kubernetes.default
users:
- name: u1
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
    token: abc
contexts:
- name: ctx
  context:
    cluster: c1
    user: u1
    namespace: kube-system
current-context: ctx
preferences: {{}}
"""
    write(t, 'full-yaml', bytes([0]) + yaml_full.encode())
    yaml_files = """apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster:
    server: https://10.0.0.1
    certificate-authority: ca.crt
users:
- name: u1
  user:
    client-certificate: pki/c.crt
    client-key: /etc/k/pki/c.key
    tokenFile: token
contexts:
- name: ctx
  context: {cluster: c1, user: u1}
"""
    write(t, 'relative-files', bytes([0]) + yaml_files.encode())
    write(t, 'relative-files-unreadable', bytes([2]) + yaml_files.encode())
    yaml_insecure = """clusters:
- name: c
  cluster: {server: "http://[fd00::1]:8080", insecure-skip-tls-verify: true}
users:
- name: u
  user: {exec: {command: foo}}
contexts:
- {name: x, context: {cluster: c, user: u}}
current-context: x
"""
    write(t, 'insecure-exec-master', bytes([1]) + yaml_insecure.encode())
    # §6.2: kubeadm's kube-proxy kubeconfig, JSON form.
    kubeadm = {'apiVersion': 'v1', 'kind': 'Config',
               'clusters': [{'name': 'default', 'cluster': {
                   'certificate-authority': '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
                   'server': 'https://control-plane.example:6443'}}],
               'users': [{'name': 'default', 'user': {
                   'tokenFile': '/var/run/secrets/kubernetes.io/serviceaccount/token'}}],
               'contexts': [{'name': 'default', 'context': {'cluster': 'default',
                                                            'namespace': 'default',
                                                            'user': 'default'}}],
               'current-context': 'default'}
    write(t, 'kubeadm-json', bytes([0]) + compact(kubeadm))
    for i, url in enumerate(['https://10.0.0.1:6443/prefix/', 'http://localhost:8080',
                             '[::1]:6443', 'https://[fd00::1]/a/b', 'api.example.com']):
        write(t, 'url-%d' % i, bytes([4]) + url.encode())
    write(t, 'base64', bytes([4]) + ca.encode())


def proxy_config_seeds():
    t = 'fuzz_proxy_config'
    # kube-proxy-ipvs.md §9.1: every field, as kubeadm writes them.
    full = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
bindAddress: 0.0.0.0
bindAddressHardFail: false
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
enableProfiling: false
hostnameOverride: node-1
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 5
  burst: 10
  contentType: application/vnd.kubernetes.protobuf
  acceptContentTypes: ""
clusterCIDR: 10.244.0.0/16,fd00:10:244::/56
configSyncPeriod: 15m0s
conntrack:
  maxPerCore: 32768
  min: 131072
  tcpEstablishedTimeout: 24h0m0s
  tcpCloseWaitTimeout: 1h0m0s
  tcpBeLiberal: false
  udpTimeout: 0s
  udpStreamTimeout: 0s
detectLocalMode: ClusterCIDR
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
iptables:
  masqueradeAll: false
  masqueradeBit: 14
  minSyncPeriod: 1s
  syncPeriod: 30s
  localhostNodePorts: true
ipvs:
  excludeCIDRs: [10.200.0.0/16]
  minSyncPeriod: 0s
  scheduler: rr
  strictARP: true
  syncPeriod: 30s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
nodePortAddresses: [primary]
oomScoreAdj: -999
portRange: ""
showHiddenMetricsForVersion: ""
featureGates: {}
logging:
  format: text
  verbosity: 2
  flushFrequency: 5s
winkernel:
  enableDSR: false
nftables:
  syncPeriod: 30s
"""
    write(t, 'config-full', bytes([0]) + full.encode())
    nulls = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
conntrack:
  maxPerCore: null
  min: null
nodePortAddresses: null
ipvs:
  scheduler: mh
"""
    write(t, 'config-nulls', bytes([0]) + nulls.encode())
    write(t, 'config-v6', bytes([0]) + b'mode: ipvs\nbindAddress: "::"\nipvs: {syncPeriod: 1m}\n')
    # §9.2: flags, one per line.
    flags = ['--proxy-mode=ipvs', '--ipvs-scheduler', 'wrr', '--ipvs-sync-period=45s',
             '--ipvs-min-sync-period=1s', '--ipvs-exclude-cidrs=10.200.0.0/16,fd00::/64',
             '--ipvs-strict-arp', '--ipvs-tcp-timeout=900s', '--masquerade-all',
             '--cluster-cidr=10.244.0.0/16', '--nodeport-addresses=192.168.0.0/16',
             '--conntrack-max-per-core=0', '--oom-score-adj=-998', '-v', '3',
             '--hostname-override=node-1', '--kube-api-qps=20', '--iptables-sync-period=30s',
             '--healthz-port=10256', '--metrics-bind-address=[::1]:10249']
    write(t, 'flags', bytes([1]) + '\n'.join(flags).encode())
    write(t, 'flags-help', bytes([1]) + b'-h')
    write(t, 'flags-bad', bytes([1]) + b'--proxy-mode=iptables\n--ipvs-scheduler=foo')
    for i, d in enumerate(['1h30m', '1.5s', '-2m3.4s', '300ms', '1us', '15m0s', '24h0m0s']):
        write(t, 'duration-%d' % i, bytes([2]) + d.encode())


# ---- netlink --------------------------------------------------------------------------------

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_MULTI, NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x2, 0x100, 0x200
NLA_F_NESTED = 0x8000
FAMILY = 0x1d
CMD_NEW_SERVICE, CMD_NEW_DEST, CMD_SET_CONFIG, CMD_SET_INFO = 1, 5, 12, 14


def attr(t, payload):
    a = struct.pack('=HH', 4 + len(payload), t) + payload
    return a + b'\0' * (-len(a) % 4)


def nest(t, *attrs):
    return attr(t | NLA_F_NESTED, b''.join(attrs))


def u16(t, v):
    return attr(t, struct.pack('=H', v))


def be16(t, v):
    return attr(t, struct.pack('!H', v))


def u32(t, v):
    return attr(t, struct.pack('=I', v))


def u64(t, v):
    return attr(t, struct.pack('=Q', v))


def string(t, s):
    return attr(t, s.encode() + b'\0')


def addr16(t, family, text):
    raw = socket.inet_pton(family, text)
    return attr(t, raw + b'\0' * (16 - len(raw)))


def nlmsg(typ, flags, seq, payload):
    return struct.pack('=IHHII', 16 + len(payload), typ, flags, seq, 0) + payload


def genl(cmd, *attrs, flags=NLM_F_MULTI, seq=7):
    return nlmsg(FAMILY, flags, seq, struct.pack('=BBH', cmd, 1, 0) + b''.join(attrs))


def stats(t, wide):
    out = []
    for s in range(1, 11):
        if wide or s in (4, 5):
            out.append(u64(s, 1000 + s))
        else:
            out.append(u32(s, 1000 + s))
    return nest(t, *out)


def service_reply(v6=False, fwmark=0, sched='rr', pe=None, flags=2):
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    attrs = [u16(1, fam)]
    if fwmark:
        attrs.append(u32(5, fwmark))
    else:
        attrs += [u16(2, 6), addr16(3, fam, 'fd00::a' if v6 else '10.96.0.10'), be16(4, 443)]
    attrs += [string(6, sched), attr(7, struct.pack('=II', flags, 0xffffffff)), u32(8, 10800),
              u32(9, 128 if v6 else 0xffffffff)]
    if pe:
        attrs.append(string(11, pe))
    attrs += [stats(10, False), stats(12, True)]
    return genl(CMD_NEW_SERVICE, nest(1, *attrs))


def dest_reply(v6=False, with_af=True):
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    attrs = [addr16(1, fam, 'fd00::7' if v6 else '10.244.1.7'), be16(2, 8080), u32(3, 0),
             u32(4, 1), u32(5, 0), u32(6, 0), u32(7, 3), u32(8, 1), u32(9, 0)]
    if with_af:
        attrs.append(u16(11, fam))
    attrs += [stats(10, False), stats(12, True)]
    return genl(CMD_NEW_DEST, nest(1, nest(1, u16(1, socket.AF_INET), u32(5, 7))),
                nest(2, *attrs))


def ack(err, request=b'', capped=False, msg=None):
    flags = 0
    payload = struct.pack('=i', err)
    orig = request if request else nlmsg(FAMILY, 5, 9, struct.pack('=BBH', 1, 1, 0))
    payload += orig[:16] if capped else orig
    if capped:
        flags |= NLM_F_CAPPED
    if msg is not None:
        flags |= NLM_F_ACK_TLVS
        payload += string(1, msg)
    return nlmsg(NLMSG_ERROR, flags, 9, payload)


def ifaddr(index, family, text, prefix):
    raw = socket.inet_pton(family, text)
    hdr = struct.pack('=BBBBI', family, prefix, 0, 0, index)
    return nlmsg(20, NLM_F_MULTI, 3, hdr + attr(2, raw) + attr(1, raw) + string(3, 'kube-ipvs0'))


def netlink_seeds():
    t = 'fuzz_ipvs_netlink'
    write(t, 'service-v4', bytes([0, 0]) + service_reply())
    write(t, 'service-v6-pe', bytes([0, 0]) + service_reply(v6=True, sched='sh', pe='sip',
                                                              flags=0x19))
    write(t, 'service-fwmark', bytes([0, 0]) + service_reply(fwmark=7))
    write(t, 'dest-v4', bytes([1, 0]) + dest_reply())
    write(t, 'dest-v6-no-af', bytes([2, 0]) + dest_reply(v6=True, with_af=False))
    info = genl(CMD_SET_INFO, u32(1, 0x010201), u32(2, 4096), flags=0)
    write(t, 'info', bytes([3, 0]) + info)
    config = genl(CMD_SET_CONFIG, u32(4, 900), u32(5, 120), u32(6, 300), flags=0)
    write(t, 'config', bytes([4, 0]) + config)
    write(t, 'ack-ok', bytes([5, 0]) + ack(0))
    write(t, 'ack-extack', bytes([5, 0]) + ack(-17, capped=True, msg='Service already exists'))
    write(t, 'ack-full-request', bytes([5, 0]) + ack(-2, request=service_reply(), msg='gone'))
    done = nlmsg(NLMSG_DONE, NLM_F_MULTI, 7, struct.pack('=i', 0))
    write(t, 'done', bytes([6, 0]) + done)
    dump = service_reply() + service_reply(v6=True) + dest_reply() + done
    write(t, 'datagram-dump', bytes([7, 4]) + dump)
    write(t, 'datagram-acks', bytes([7, 4]) + ack(0) + ack(-17, capped=True, msg='exists') +
          info + config)
    # The host layer's replies: an RTM_NEWADDR dump of kube-ipvs0 (ifaddrmsg: 8 bytes).
    addrs = (ifaddr(5, socket.AF_INET, '10.96.0.10', 32) +
             ifaddr(5, socket.AF_INET6, 'fd00::a', 128) + done)
    write(t, 'datagram-rtm-newaddr', bytes([7, 8]) + addrs)


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    objects_seeds()
    watch_seeds()
    kubeconfig_seeds()
    proxy_config_seeds()
    netlink_seeds()
    total = 0
    for root, _, files in os.walk(CORPUS):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print('seed corpora: %d bytes in %s' % (total, CORPUS))


if __name__ == '__main__':
    main()
