#!/usr/bin/perl
# bench/probe.pl: small network clients for the benchmarks, run inside a
# pod's network namespace (core Perl only).
#
#   probe.pl wait-http IP PORT DEADLINE_S
#       Starts a new non-blocking TCP connect to IP:PORT every 2 ms (earlier
#       attempts stay open), until one connects and answers an HTTP GET with
#       a status line. Prints the wall-clock time (ns since the epoch) at
#       which that connection completed, or "timeout".
#   probe.pl wait-http-lines PORT DEADLINE_S
#       The same for each IP read from stdin, one line each, answering each
#       with a line: a poller started once, so that its start-up is not in
#       the time measured.
#   probe.pl http-latency IP PORT COUNT INTERVAL_MS
#       COUNT HTTP GETs, each on a new connection, one every INTERVAL_MS;
#       prints each one's time to the status line in ms ("fail" on error).
#   probe.pl udp-flows IP PORT COUNT FIRST_PORT
#       Sends one datagram to IP:PORT from each of COUNT source ports
#       FIRST_PORT, FIRST_PORT+1, ...: COUNT distinct UDP flows.
#   probe.pl udp-bcast IP PORT SECONDS
#       Sends small UDP datagrams to the broadcast address IP:PORT
#       (SO_BROADCAST) as fast as it can for SECONDS; prints how many.
#   probe.pl tcp-hold IP PORT COUNT SECONDS
#       Opens COUNT TCP connections to IP:PORT and holds them SECONDS;
#       prints how many connected.
#   probe.pl dns-latency IP NAME COUNT INTERVAL_MS
#       COUNT UDP queries (type A) for NAME to IP:53, one every INTERVAL_MS;
#       prints each one's time to an answer in ms ("fail" after 1 s).
#   probe.pl tcp-trickle IP PORT COUNT SECONDS HEX
#       Opens COUNT TCP connections to IP:PORT, writes the bytes HEX (the
#       start of a request) on each and never finishes it (a slow-loris
#       client); holds
#       them SECONDS; prints how many connected and how many the server
#       had closed by then.
#   probe.pl tcp-sink IP PORT SECONDS
#       Listens on IP:PORT (backlog 4096), accepts every connection and
#       holds it open without reading, for SECONDS.
#   probe.pl icmp-ids IP COUNT SECONDS
#       Sends ICMP echo requests to IP with COUNT different identifiers
#       (raw socket: needs CAP_NET_RAW, which pods have), round after round
#       for SECONDS; prints how many were sent.
#   probe.pl vxlan-inject PEER PORT VNI SRC_IP DST_IP DST_PORT COUNT
#       Sends COUNT UDP datagrams to PEER:PORT, each a VXLAN packet (VNI)
#       carrying an Ethernet/IPv4/UDP frame from SRC_IP (spoofed) to
#       DST_IP:DST_PORT with the payload "INJECTED": what a pod would send
#       to inject frames into another node's pods through the overlay.
#   probe.pl rss-peak PID INTERVAL_MS
#       Reads VmRSS of process PID every INTERVAL_MS until SIGTERM (or until
#       PID is gone); then prints the largest value in KiB and the number
#       of samples. Not a network client: runs anywhere.
use strict;
use warnings;
use Socket qw(:all);
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Errno qw(EINPROGRESS);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);

my $mode = shift // die "mode?\n";

sub nb_connect {
    my ($ip, $port) = @_;
    socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!\n";
    my $flags = fcntl($s, F_GETFL, 0);
    fcntl($s, F_SETFL, $flags | O_NONBLOCK);
    my $ok = connect($s, pack_sockaddr_in($port, inet_aton($ip)));
    return undef unless $ok || $! == EINPROGRESS;
    return $s;
}

sub http_get {    # on a connected socket: 1 if a status line comes back within 1 s
    my ($s) = @_;
    my $flags = fcntl($s, F_GETFL, 0);
    fcntl($s, F_SETFL, $flags & ~O_NONBLOCK);
    setsockopt($s, SOL_SOCKET, SO_RCVTIMEO, pack('l!l!', 1, 0));
    syswrite($s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n") or return 0;
    my $buf = '';
    while (length($buf) < 12) {
        my $n = sysread($s, $buf, 4096, length $buf);
        return 0 unless $n;
    }
    return $buf =~ m{^HTTP/1\.[01] \d\d\d} ? 1 : 0;
}

sub wait_http {    # the epoch time (s) an HTTP answer came from IP:PORT, or undef at the deadline
    my ($ip, $port, $deadline) = @_;
    my $end = time + $deadline;
    my @pending;    # [socket, started]
    my $next = 0;
    while (time < $end) {
        my $t = time;
        if ($t >= $next) {
            my $s = nb_connect($ip, $port);
            push @pending, [$s, $t] if $s;
            $next = $t + 0.002;
        }
        @pending = grep { time - $_->[1] < 0.5 } @pending;
        my $w = '';
        vec($w, fileno($_->[0]), 1) = 1 for @pending;
        my $wait = $next - time;
        $wait = 0 if $wait < 0;
        my $n = select(undef, my $wout = $w, undef, $wait);
        next unless $n && $n > 0;
        my $when = time;
        my @keep;
        for my $p (@pending) {
            if (vec($wout, fileno($p->[0]), 1)) {
                my $err = unpack('i', getsockopt($p->[0], SOL_SOCKET, SO_ERROR));
                if ($err == 0 && http_get($p->[0])) {
                    close $_->[0] for @pending;
                    return $when;
                }
                close $p->[0];
            } else {
                push @keep, $p;
            }
        }
        @pending = @keep;
    }
    close $_->[0] for @pending;
    return undef;
}

if ($mode eq 'wait-http') {
    my ($ip, $port, $deadline) = @ARGV;
    my $when = wait_http($ip, $port, $deadline);
    if (defined $when) {
        printf "%.0f\n", $when * 1e9;
        exit 0;
    }
    print "timeout\n";
    exit 1;
} elsif ($mode eq 'wait-http-lines') {
    my ($port, $deadline) = @ARGV;
    $| = 1;
    while (my $ip = <STDIN>) {
        chomp $ip;
        my $when = wait_http($ip, $port, $deadline);
        print defined $when ? sprintf("%.0f\n", $when * 1e9) : "timeout\n";
    }
} elsif ($mode eq 'http-latency') {
    my ($ip, $port, $count, $interval) = @ARGV;
    $| = 1;
    for (1 .. $count) {
        my $t0 = time;
        my $s = IO::Socket::INET->new(PeerAddr => $ip, PeerPort => $port, Proto => 'tcp', Timeout => 2);
        if ($s && http_get($s)) {
            printf "%.3f\n", (time - $t0) * 1000;
        } else {
            print "fail\n";
        }
        close $s if $s;
        my $left = $interval / 1000 - (time - $t0);
        sleep $left if $left > 0;
    }
} elsif ($mode eq 'udp-flows') {
    my ($ip, $port, $count, $first) = @ARGV;
    my $to = pack_sockaddr_in($port, inet_aton($ip));
    my $sent = 0;
    for my $i (0 .. $count - 1) {
        socket(my $s, PF_INET, SOCK_DGRAM, 0) or die "socket: $!\n";
        setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1);
        bind($s, pack_sockaddr_in($first + $i, INADDR_ANY)) or next;
        $sent++ if send($s, "flow $i", 0, $to);
        close $s;
    }
    print "$sent\n";
} elsif ($mode eq 'udp-bcast') {
    my ($ip, $port, $secs) = @ARGV;
    socket(my $s, PF_INET, SOCK_DGRAM, 0) or die "socket: $!\n";
    setsockopt($s, SOL_SOCKET, SO_BROADCAST, 1) or die "SO_BROADCAST: $!\n";
    my $to = pack_sockaddr_in($port, inet_aton($ip));
    my ($sent, $end) = (0, time + $secs);
    local $SIG{TERM} = sub { $end = 0 };
    while (time < $end) {
        for (1 .. 100) { $sent++ if send($s, "broadcast", 0, $to) }
    }
    print "$sent broadcast datagrams sent\n";
} elsif ($mode eq 'tcp-hold') {
    my ($ip, $port, $count, $secs) = @ARGV;
    my @socks;
    for (1 .. $count) {
        my $s = IO::Socket::INET->new(PeerAddr => $ip, PeerPort => $port, Proto => 'tcp', Timeout => 2);
        push @socks, $s if $s;
    }
    print scalar(@socks), "\n";
    sleep $secs;
} elsif ($mode eq 'dns-latency') {
    my ($ip, $name, $count, $interval) = @ARGV;
    $| = 1;
    socket(my $s, PF_INET, SOCK_DGRAM, 0) or die "socket: $!\n";
    connect($s, pack_sockaddr_in(53, inet_aton($ip))) or die "connect: $!\n";
    my $qname = join('', map { chr(length $_) . $_ } split /\./, $name) . "\0";
    for my $i (1 .. $count) {
        my $t0 = time;
        my $id = $i & 0xffff;
        my $ok = 0;
        if (send($s, pack('nnnnnn', $id, 0x0100, 1, 0, 0, 0) . $qname . pack('nn', 1, 1), 0)) {
            my $deadline = $t0 + 1;
            while ((my $left = $deadline - time) > 0) {
                my $r = '';
                vec($r, fileno($s), 1) = 1;
                last unless select($r, undef, undef, $left);
                my $buf;
                defined(recv($s, $buf, 4096, 0)) or last;
                if (length($buf) >= 12 && unpack('n', $buf) == $id) { $ok = 1; last }
            }
        }
        if ($ok) { printf "%.3f\n", (time - $t0) * 1000 } else { print "fail\n" }
        my $left = $interval / 1000 - (time - $t0);
        sleep $left if $left > 0;
    }
} elsif ($mode eq 'tcp-trickle') {
    my ($ip, $port, $count, $secs, $hex) = @ARGV;
    my $start = pack('H*', $hex);
    my @socks;
    my $end = time + $secs;
    local $SIG{TERM} = sub { $end = 0 };
    for (1 .. $count) {
        last if time >= $end;
        my $s = IO::Socket::INET->new(PeerAddr => $ip, PeerPort => $port, Proto => 'tcp', Timeout => 1) or next;
        syswrite($s, $start);
        push @socks, $s;
    }
    my $opened = @socks;
    sleep 0.2 while time < $end;
    # A socket the server closed reads EOF (or an error) at once.
    my $closed = 0;
    for my $s (@socks) {
        my $flags = fcntl($s, F_GETFL, 0);
        fcntl($s, F_SETFL, $flags | O_NONBLOCK);
        my $n = sysread($s, my $buf, 1);
        $closed++ if defined($n) ? $n == 0 : $! != Errno::EAGAIN();
    }
    print "$opened connected, $closed closed by the server\n";
} elsif ($mode eq 'tcp-sink') {
    my ($ip, $port, $secs) = @ARGV;
    my $l = IO::Socket::INET->new(LocalAddr => $ip, LocalPort => $port, Listen => 4096, ReuseAddr => 1, Proto => 'tcp')
        or die "listen $ip:$port: $!\n";
    my @held;
    my $end = time + $secs;
    local $SIG{TERM} = sub { $end = 0 };
    while (time < $end) {
        my $r = '';
        vec($r, fileno($l), 1) = 1;
        next unless select($r, undef, undef, 0.2);
        my $c = $l->accept or next;
        push @held, $c;
    }
    print scalar(@held), " connections held\n";
} elsif ($mode eq 'icmp-ids') {
    my ($ip, $count, $secs) = @ARGV;
    socket(my $s, PF_INET, SOCK_RAW, 1) or die "raw socket (needs CAP_NET_RAW): $!\n";
    my $to = pack_sockaddr_in(0, inet_aton($ip));
    my ($sent, $end) = (0, time + $secs);
    local $SIG{TERM} = sub { $end = 0 };
    ROUND: while (time < $end) {
        for my $id (0 .. $count - 1) {
            last ROUND if time >= $end;
            my $msg = pack('CCnnn', 8, 0, 0, $id & 0xffff, 1) . 'hostile';
            my $sum = checksum($msg);
            substr($msg, 2, 2) = pack('n', $sum);
            $sent++ if send($s, $msg, 0, $to);
        }
    }
    print "$sent echo requests sent\n";
} elsif ($mode eq 'vxlan-inject') {
    my ($peer, $port, $vni, $src, $dst, $dport, $count) = @ARGV;
    socket(my $s, PF_INET, SOCK_DGRAM, 0) or die "socket: $!\n";
    my $to = pack_sockaddr_in($port, inet_aton($peer));
    my $payload = 'INJECTED';
    my $udp = pack('nnnn', 4242, $dport, 8 + length $payload, 0) . $payload;
    my $ip = pack('CCnnnCCna4a4', 0x45, 0, 20 + length $udp, 1, 0x4000, 64, 17, 0, inet_aton($src), inet_aton($dst));
    substr($ip, 10, 2) = pack('n', checksum($ip));
    # MACs as podnet derives them (0a:58 + the IPv4 address), as a real
    # attacker would read them from ARP.
    my $eth = "\x0a\x58" . inet_aton($dst) . "\x0a\x58" . inet_aton($src) . pack('n', 0x0800);
    my $vx = pack('CCCC', 0x08, 0, 0, 0) . pack('N', ($vni << 8));
    my $sent = 0;
    for (1 .. $count) { $sent++ if send($s, $vx . $eth . $ip . $udp, 0, $to); sleep 0.01 }
    print "$sent VXLAN datagrams sent\n";
} elsif ($mode eq 'rss-peak') {
    my ($pid, $interval) = @ARGV;
    my ($max, $n, $stop) = (0, 0, 0);
    local $SIG{TERM} = sub { $stop = 1 };
    while (!$stop) {
        open(my $f, '<', "/proc/$pid/status") or last;
        while (<$f>) {
            if (/^VmRSS:\s+(\d+)/) { $max = $1 if $1 > $max; $n++; last }
        }
        close $f;
        sleep($interval / 1000);
    }
    print "$max $n\n";
} else {
    die "unknown mode $mode\n";
}

sub checksum {
    my ($data) = @_;
    $data .= "\0" if length($data) % 2;
    my $sum = 0;
    $sum += $_ for unpack('n*', $data);
    $sum = ($sum >> 16) + ($sum & 0xffff) while $sum >> 16;
    return ~$sum & 0xffff;
}
