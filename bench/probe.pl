#!/usr/bin/perl
# bench/probe.pl: small network clients for the benchmarks, run inside a
# pod's network namespace (core Perl only).
#
#   probe.pl wait-http IP PORT DEADLINE_S
#       Starts a new non-blocking TCP connect to IP:PORT every 2 ms (earlier
#       attempts stay open), until one connects and answers an HTTP GET with
#       a status line. Prints the wall-clock time (ns since the epoch) at
#       which that connection completed, or "timeout".
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

if ($mode eq 'wait-http') {
    my ($ip, $port, $deadline) = @ARGV;
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
                    printf "%.0f\n", $when * 1e9;
                    exit 0;
                }
                close $p->[0];
            } else {
                push @keep, $p;
            }
        }
        @pending = @keep;
    }
    print "timeout\n";
    exit 1;
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
} else {
    die "unknown mode $mode\n";
}
