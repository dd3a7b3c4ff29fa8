#!/usr/bin/env python3
"""Writes the seed corpora under corpus/<target>/ (committed; rerun after a
change of input format). Frames are what pods really send: a virtio-net
header (10 zero bytes: no offload), Ethernet, then ARP or IPv4 with valid
checksums."""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def mac(last):
    return bytes([0x0A, 0x58, 10, 244, 0, last])


def ip(*octets):
    return bytes(octets)


def pod(last):
    return ip(10, 244, 0, last)


VNET = bytes(10)
GW_MAC = mac(1)
VIP = ip(10, 96, 0, 10)
EMPTY_VIP = ip(10, 96, 0, 11)


def eth(dst, src, ethertype, payload):
    return VNET + dst + src + struct.pack("!H", ethertype) + payload


def arp_request(src_last, target):
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac(src_last) + pod(src_last) + bytes(6) + target
    return eth(b"\xff" * 6, mac(src_last), 0x0806, arp)


def ipv4(src, dst, proto, payload, ident=0x1234):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0, src, dst)
    header = header[:10] + struct.pack("!H", csum(header)) + header[12:]
    return header + payload


def tcp(src, dst, sport, dport, seq, ack, flags, options=b""):
    off = (20 + len(options)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, 64240, 0, 0) + options
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(seg))
    return seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]


def udp(src, dst, sport, dport, data):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(seg))
    return seg[:6] + struct.pack("!H", csum(pseudo + seg) or 0xFFFF) + seg[8:]


SYN_OPTS = bytes([2, 4, 0x05, 0xB4, 4, 2, 8, 10]) + bytes(8) + bytes([1, 3, 3, 7])


def syn(src_last, dst_ip, dst_mac, dport, sport=40000):
    src = pod(src_last)
    return eth(dst_mac, mac(src_last), 0x0800, ipv4(src, dst_ip, 6, tcp(src, dst_ip, sport, dport, 1000, 0, 0x02, SYN_OPTS)))


def record(port_index, frame, dt=0):
    """One record of the switch_frames input: port selector, clock step, length, frame."""
    return bytes([port_index, dt]) + struct.pack("<H", len(frame)) + frame


# Port selectors of the switch_frames target: 0 host, 1..3 pods .2 .3 .4, 4 unattached.
def switch_seeds():
    write("switch_frames", "arp-request", record(1, arp_request(2, pod(3))))
    write("switch_frames", "arp-request-vip-from-host", record(0, arp_request(1, VIP)))
    write("switch_frames", "tcp-syn-pod-to-pod", record(1, syn(2, pod(3), mac(3), 8080)))
    write("switch_frames", "tcp-syn-to-service", record(3, syn(4, VIP, GW_MAC, 80)))
    write("switch_frames", "tcp-syn-to-empty-service", record(1, syn(2, EMPTY_VIP, GW_MAC, 80)))
    dns = dig_query(b"web.default.svc.cluster.local", 1, edns=True)
    u = eth(GW_MAC, mac(3), 0x0800, ipv4(pod(3), VIP, 17, udp(pod(3), VIP, 50000, 53, dns)))
    write("switch_frames", "udp-to-service", record(2, u))
    # A connection through the service: SYN from .4, SYN-ACK back from the
    # first backend (.2), then the clock moves past the SYN timeout.
    synack_seg = tcp(pod(2), pod(4), 8080, 40000, 5000, 1001, 0x12, SYN_OPTS)
    synack = eth(GW_MAC, mac(2), 0x0800, ipv4(pod(2), pod(4), 6, synack_seg))
    write("switch_frames", "service-conversation",
          record(3, syn(4, VIP, GW_MAC, 80)) + record(1, synack, dt=5) + record(3, syn(4, VIP, GW_MAC, 80), dt=40))
    # NetworkPolicy: control op 5 isolates pod .3 for ingress, admitting .2
    # on TCP 8080 (0x42), then .2 and .4 try it and the admitted one is answered.
    synack_b = eth(GW_MAC, mac(3), 0x0800, ipv4(pod(3), pod(2), 6, tcp(pod(3), pod(2), 8080, 40000, 5000, 1001, 0x12, SYN_OPTS)))
    write("switch_frames", "policy-isolated-pod",
          record(0xf8, bytes([5, 0x42])) + record(1, syn(2, pod(3), mac(3), 8080))
          + record(2, synack_b) + record(3, syn(4, pod(3), mac(3), 8080)))


def name(dotted):
    return b"".join(bytes([len(l)]) + l for l in dotted.split(b".") if l) + b"\0"


def dig_query(qname, qtype, edns):
    """A query as dig 9.18 sends it: RD and AD set, EDNS0 with a 1232-byte
    buffer and a client cookie."""
    header = struct.pack("!HHHHHH", 0x8A3C, 0x0120, 1, 0, 0, 1 if edns else 0)
    q = header + name(qname) + struct.pack("!HH", qtype, 1)
    if edns:
        cookie = struct.pack("!HH", 10, 8) + bytes.fromhex("2f1ec8a5b6d34e71")
        q += b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(cookie)) + cookie
    return q


def dns_seeds():
    write("dns_queries", "dig-a-edns", dig_query(b"web.default.svc.cluster.local", 1, edns=True))
    write("dns_queries", "a-plain", dig_query(b"web.default.svc.cluster.local", 1, edns=False))
    write("dns_queries", "srv-edns", dig_query(b"_http._tcp.web.default.svc.cluster.local", 33, edns=True))
    write("dns_queries", "ptr", dig_query(b"7.0.244.10.in-addr.arpa", 12, edns=False))
    write("dns_queries", "headless-many", dig_query(b"many.big.svc.cluster.local", 1, edns=False))
    write("dns_queries", "forward", dig_query(b"example.com", 1, edns=True))


def frame(body, status=0, version=1):
    return struct.pack("<IHB", 3 + len(body), version, status) + body


def pstr(s):
    return bytes([len(s)]) + s  # postcard: varint length (< 128) then bytes


def control_seeds():
    get_pods = bytes([3, 1]) + pstr(b"default")  # Request::GetPods { namespace: Some("default") }
    write("control_frames", "get-pods", frame(get_pods))
    delete = bytes([5]) + pstr(b"default") + pstr(b"web-0")  # Request::DeletePod
    write("control_frames", "two-frames", frame(get_pods) + frame(delete))
    write("control_frames", "error-frame", frame(b"agent speaks protocol 2", status=1, version=2))


def tso_frame(mss, data_len, seq=1):
    """A TCP/IPv4 super-frame; with control bit 3 the first two header bytes are its gso_size."""
    src, dst = pod(2), ip(10, 244, 1, 2)
    data = bytes((i * 7) & 0xFF for i in range(data_len))
    frame = eth(mac(1), mac(2), 0x0800, ipv4(src, dst, 6, tcp(src, dst, 40000, 5201, seq, 1, 0x18) + data))
    return struct.pack("<H", mss) + frame[2:]


# overlay_transmit: [control][4 outcomes][virtio-net header][frame].
def overlay_seeds():
    ok = bytes(4)
    write("overlay_transmit", "plain", bytes([0]) + ok + syn(2, ip(10, 244, 1, 2), mac(1), 80))
    write("overlay_transmit", "tso-two-sends", bytes([0x08]) + ok + tso_frame(1398, 65000 - 54))
    write("overlay_transmit", "tso-full-tail", bytes([0x08]) + ok + tso_frame(500, 46 * 500))
    write("overlay_transmit", "tso-flush", bytes([0x0A]) + ok + tso_frame(500, 3 * 500))
    write("overlay_transmit", "tso-gso-refused", bytes([0x08, 6, 0, 5, 7]) + tso_frame(1000, 10 * 1000 + 1))


def config_seeds():
    root = os.path.dirname(HERE)
    for board in ("default", "rpi4b"):
        shutil.copy(os.path.join(root, "board-configs", board + ".toml"),
                    os.path.join(HERE, "corpus", "board_config", board + ".toml"))


REMOTE = ip(192, 168, 77, 2)


def erec(op, arg, data=b""):
    """One record of the egress_frames input: op, arg, length, bytes."""
    return bytes([op, arg]) + struct.pack("<H", len(data)) + data


def egress_seeds():
    # arg 0: bytes are the IPv4 packet, from 10.244.0.2.
    src = pod(2)
    syn_packet = ipv4(src, REMOTE, 6, tcp(src, REMOTE, 40000, 80, 1000, 0, 0x02, SYN_OPTS))
    ack = ipv4(src, REMOTE, 6, tcp(src, REMOTE, 40000, 80, 1001, 1, 0x10) + b"GET /")
    fin = ipv4(src, REMOTE, 6, tcp(src, REMOTE, 40000, 80, 1006, 1, 0x11))
    write("egress_frames", "tcp-connect-data-fin",
          erec(0, 0, syn_packet) + erec(1, 0) + erec(0, 0, ack) + erec(3, 0, b"HTTP/1.0 200 OK")
          + erec(2, 0, b"\x03") + erec(0, 0, fin) + erec(3, 0) + erec(2, 0, b"\x01") + erec(7, 1))
    write("egress_frames", "tcp-connect-refused", erec(0, 0, syn_packet) + erec(1, 0, b"x") + erec(7, 0))
    write("egress_frames", "tcp-full-kernel-buffer",
          erec(0, 0, syn_packet) + erec(1, 0) + erec(4, 0) + erec(0, 0, ack) + erec(2, 0, b"\x02")
          + erec(3, 0x80, b"x") + erec(2, 0, b"\x01"))
    dns = ipv4(src, REMOTE, 17, udp(src, REMOTE, 5353, 53, b"query"))
    write("egress_frames", "udp-reply-refused-expiry",
          erec(0, 0, dns) + erec(3, 0, b"reply") + erec(2, 0, b"\x01") + erec(3, 0xc0) + erec(2, 0, b"\x01")
          + erec(7, 31) + erec(6, 0))
    request = bytes([8, 0, 0, 0, 0, 7, 0, 1]) + b"ping"
    request = request[:2] + struct.pack("!H", csum(request)) + request[4:]
    write("egress_frames", "echo", erec(0, 0, ipv4(src, REMOTE, 1, request)) + erec(7, 11))


def crec(payload):
    """One record of the cluster_messages input: one decrypted Noise payload."""
    return struct.pack("!H", len(payload)) + payload


def cmsg(body):
    """An application message: u32 length, then the postcard bytes."""
    return struct.pack("!I", len(body)) + body


def pstr(text):
    raw = text if isinstance(text, bytes) else text.encode()
    return bytes([len(raw)]) + raw


def cluster_seeds():
    version = 4  # api::PROTOCOL_VERSION
    hello_cli = bytes([0, version])
    hello_node = bytes([1, version]) + pstr("n1") + bytes([192, 168, 1, 2])
    settings = pstr("10.244.0.0/16") + pstr("10.96.0.0/12") + bytes([10, 96, 0, 10]) + pstr("cluster.local")
    welcome = bytes([0]) + pstr("10.244.1.0/24") + settings
    write("cluster_messages", "cli-hello-get-nodes", crec(cmsg(hello_cli)) + crec(cmsg(bytes([9]))))
    write("cluster_messages", "node-hello-report", crec(cmsg(hello_node)) + crec(cmsg(bytes([0]))))
    write("cluster_messages", "welcome-desired-refused",
          crec(cmsg(welcome)) + crec(cmsg(bytes([2, 0, 0, 0, 0]))) + crec(cmsg(bytes([1]) + pstr("name taken"))))
    write("cluster_messages", "answer-error", crec(cmsg(bytes([1]) + pstr("bad request"))))
    # A message cut over three Noise payloads, the length prefix split too.
    whole = cmsg(hello_node)
    write("cluster_messages", "split", crec(whole[:2]) + crec(whole[2:7]) + crec(whole[7:]))
    write("cluster_messages", "claims-4gib", crec(b"\xff\xff\xff\xff" + hello_cli))
    # Streams into a member's pods: the member's dial-back hello, the
    # server's Open (an exec, a port-forward) and the StreamFrames both ways.
    hello_stream = bytes([3, 8]) + pstr("n1") + bytes([7] * 32) + bytes([1] * 16)
    exec_asked = bytes([2]) + pstr("sh") + pstr("-c") + bytes([1, 1, 1, 0])
    open_exec = bytes([3]) + bytes([2] * 16) + bytes([0]) + pstr("default") + pstr("web") + exec_asked
    open_forward = bytes([3]) + bytes([3] * 16) + bytes([2]) + pstr("default") + pstr("web") + bytes([0x90, 0x3f])
    write("cluster_messages", "stream-hello-open",
          crec(cmsg(hello_stream)) + crec(cmsg(open_exec)) + crec(cmsg(open_forward)))
    frames = [bytes([0]), bytes([1]) + pstr("pod not running"), bytes([4, 1, 3]) + b"hi\n",
              bytes([5, 0]), bytes([6, 80, 24]), bytes([7, 6]), bytes([8]) + pstr("gone")]
    write("cluster_messages", "stream-frames", b"".join(crec(cmsg(f)) for f in frames))


# SPDY/3's header dictionary (as runtime/src/kube/stream/spdy.rs builds it).
SPDY_WORDS = ["options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type", "date",
    "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
    "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
    "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after", "server", "te",
    "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
    "public", "set-cookie", "keep-alive", "origin"]
SPDY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
SPDY_DICT = b"".join(struct.pack(">I", len(w)) + w.encode() for w in SPDY_WORDS) + SPDY_TAIL.encode()


def spdy_seeds():
    import zlib
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, SPDY_DICT)

    def block(headers):
        raw = struct.pack(">I", len(headers))
        for k, v in headers:
            raw += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        return z.compress(raw) + z.flush(zlib.Z_SYNC_FLUSH)

    def control(kind, flags, payload):
        return struct.pack(">HHB", 0x8003, kind, flags) + len(payload).to_bytes(3, "big") + payload

    def syn_stream(stream, headers, fin=False):
        return control(1, 1 if fin else 0, struct.pack(">IIBB", stream, 0, 0, 0) + block(headers))

    def data(stream, payload, fin=False):
        return struct.pack(">IB", stream, 1 if fin else 0) + len(payload).to_bytes(3, "big") + payload

    # kubectl 1.27's exec: error, stdin, stdout, stderr streams, input, its end.
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, SPDY_DICT)
    exec_streams = b"".join(syn_stream(2 * i + 1, [("streamtype", t)])
                            for i, t in enumerate(["error", "stdin", "stdout", "stderr"]))
    exec_streams += data(3, b"hi\n") + data(3, b"", fin=True) + control(6, 0, struct.pack(">I", 1))
    write("spdy_frames", "exec-streams", b"\0" + exec_streams)
    # Port-forward's pair for one connection, data both ways, settings and credit.
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, SPDY_DICT)
    pair = syn_stream(1, [("streamtype", "error"), ("port", "8080"), ("requestid", "0")])
    pair += syn_stream(3, [("streamtype", "data"), ("port", "8080"), ("requestid", "0")])
    pair += control(4, 0, struct.pack(">IBBHI", 1, 0, 0, 7, 65536)) + control(9, 0, struct.pack(">II", 0, 65536))
    pair += data(3, b"GET / HTTP/1.0\r\n\r\n") + control(3, 0, struct.pack(">II", 3, 5)) + control(7, 0, struct.pack(">II", 3, 0))
    write("spdy_frames", "port-forward-pair", b"\0" + pair)
    write("spdy_frames", "channel-stdin", b"\1\0hi")
    write("spdy_frames", "channel-resize", b"\1\4" + b'{"Width":120,"Height":40}')
    write("spdy_frames", "channel-close", b"\1\xff\0")


def ingress_seeds():
    # Lines: rule host, rule path, request host, request path.
    write("ingress_routes", "prefix", b"shop.example\n/api\nshop.example\n/api/items")
    write("ingress_routes", "wildcard", b"*.example.com\n/\nblog.example.com\n/x")
    write("ingress_routes", "trailing-slash", b"shop.example\n/foo/\nShop.Example:80\n/foo")
    write("ingress_routes", "empty", b"\n/\n\n//..//%2e")


if __name__ == "__main__":
    switch_seeds()
    dns_seeds()
    control_seeds()
    overlay_seeds()
    os.makedirs(os.path.join(HERE, "corpus", "board_config"), exist_ok=True)
    config_seeds()
    egress_seeds()
    cluster_seeds()
    spdy_seeds()
    ingress_seeds()
