using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using KvJournal.Testing;
using Xunit;
using Xunit.Abstractions;

namespace KvJournal.Integration.Tests;

/// <summary>
/// What other projects' clients, proxies and tools rely on beyond the API's answers, each run
/// against the reference etcd and kvjournal alike: TLS-terminating proxies, the JSON gateway's
/// framing of watch messages, the peer URLs MemberList reports.
/// </summary>
public sealed class WireCompatibilityTests(ITestOutputHelper output)
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private static async Task<ServerProcess> StartAsync(string server) =>
        server == "etcd" ? await ReferenceEtcdProcess.StartAsync() : await KvJournalProcess.StartAsync();

    /// <summary>
    /// A client speaking TLS to a proxy that relays plaintext sends <c>:scheme https</c> to a
    /// plaintext port; etcd serves it, and so must we (Kestrel refused it with RST_STREAM).
    /// </summary>
    [Theory]
    [InlineData("etcd")]
    [InlineData("kvjournal")]
    public async Task CallsThroughATlsTerminatingProxyAreServed(string server)
    {
        await using var target = await StartAsync(server);
        var tls = TlsFiles.Create(Paths.NewTempDir("proxy-tls"));
        try
        {
            await using var proxy = new TlsTerminatingProxy(tls, target.Port);
            using var channel = GrpcChannel.ForAddress($"https://127.0.0.1:{proxy.Port}", new GrpcChannelOptions { HttpHandler = tls.ClientHandler() });
            var kv = new KV.KVClient(channel);
            var put = await kv.PutAsync(new PutRequest { Key = B("proxied"), Value = B("v") }, deadline: DateTime.UtcNow.AddSeconds(10));
            var got = await kv.RangeAsync(new RangeRequest { Key = B("proxied") }, deadline: DateTime.UtcNow.AddSeconds(10));
            Assert.Equal(put.Header.Revision, got.Kvs[0].ModRevision);
            await using var watch = new WatchSession(channel);
            Assert.True((await watch.WatchAsync(WatchSession.Create("proxied", null, startRevision: put.Header.Revision))).Created);
            Assert.Equal("proxied", (await watch.NextAsync(TimeSpan.FromSeconds(10))).Events[0].Kv.Key.ToStringUtf8());
        }
        finally
        {
            Paths.DeleteDir(tls.Dir);
        }
    }

    /// <summary>
    /// The JSON gateway writes each watch message as one HTTP chunk, however large: clients that
    /// read one chunk as one message hung on a 10 KiB event split into 4 KiB chunks.
    /// </summary>
    [Theory]
    [InlineData("etcd")]
    [InlineData("kvjournal")]
    public async Task EachGatewayWatchMessageIsOneChunk(string server)
    {
        await using var target = await StartAsync(server);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", target.Port, timeout.Token);
        var http = new ChunkedResponse(tcp.GetStream());
        string body = """{"create_request":{"key":"Ymln"}}"""; // "big"
        await tcp.GetStream().WriteAsync(Encoding.ASCII.GetBytes(
            $"POST /v3/watch HTTP/1.1\r\nHost: {target.Endpoint}\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\n\r\n{body}"), timeout.Token);
        var headers = await http.ReadHeadersAsync(timeout.Token);
        Assert.StartsWith("HTTP/1.1 200", headers[0]);
        Assert.Contains(headers, h => h.Equals("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase));

        var created = await http.ReadMessageChunkAsync(timeout.Token);
        Assert.True(created.RootElement.GetProperty("result").GetProperty("created").GetBoolean());
        string value = new('v', 10 * 1024);
        await target.Kv.PutAsync(new PutRequest { Key = B("big"), Value = B(value) });
        var change = await http.ReadMessageChunkAsync(timeout.Token);
        var kv = change.RootElement.GetProperty("result").GetProperty("events")[0].GetProperty("kv");
        Assert.Equal(value, Encoding.UTF8.GetString(kv.GetProperty("value").GetBytesFromBase64()));
    }

    /// <summary>HTTP/1.1 chunked response reading: each chunk must hold one whole JSON message.</summary>
    private sealed class ChunkedResponse(NetworkStream stream)
    {
        private readonly byte[] _buffer = new byte[64 * 1024];
        private int _start, _end;

        public async Task<List<string>> ReadHeadersAsync(CancellationToken cancellationToken)
        {
            var lines = new List<string>();
            for (string line; (line = await ReadLineAsync(cancellationToken)).Length > 0;) lines.Add(line);
            return lines;
        }

        /// <summary>The next chunk that is not blank, parsed on its own as one JSON document.</summary>
        public async Task<JsonDocument> ReadMessageChunkAsync(CancellationToken cancellationToken)
        {
            while (true)
            {
                int size = Convert.ToInt32(await ReadLineAsync(cancellationToken), 16);
                byte[] chunk = new byte[size];
                for (int at = 0; at < size;) at += await ReadAsync(chunk.AsMemory(at), cancellationToken);
                Assert.Equal("", await ReadLineAsync(cancellationToken));
                if (Encoding.UTF8.GetString(chunk).Trim().Length == 0) continue;
                try
                {
                    return JsonDocument.Parse(chunk);
                }
                catch (JsonException ex)
                {
                    Assert.Fail($"a chunk of {size} bytes is not one JSON message ({ex.Message}): {Encoding.UTF8.GetString(chunk)[..Math.Min(size, 200)]}");
                    throw;
                }
            }
        }

        private async Task<string> ReadLineAsync(CancellationToken cancellationToken)
        {
            var line = new StringBuilder();
            byte[] one = new byte[1];
            while (true)
            {
                if (await ReadAsync(one, cancellationToken) == 0) throw new EndOfStreamException("the server closed the response");
                if (one[0] == '\n') return line.ToString().TrimEnd('\r');
                line.Append((char)one[0]);
            }
        }

        private async Task<int> ReadAsync(Memory<byte> into, CancellationToken cancellationToken)
        {
            if (_start == _end)
            {
                _start = 0;
                _end = await stream.ReadAsync(_buffer, cancellationToken);
                if (_end == 0) return 0;
            }
            int n = Math.Min(into.Length, _end - _start);
            _buffer.AsMemory(_start, n).CopyTo(into);
            _start += n;
            return n;
        }
    }

    /// <summary>
    /// A client that shuts down its sending side while a watch is open gets the connection closed
    /// with a FIN, as etcd closes it, never a reset (proxies and clients treat a reset as an error).
    /// </summary>
    [Theory]
    [InlineData("etcd")]
    [InlineData("kvjournal")]
    public async Task AHalfClosedConnectionIsClosedWithoutAReset(string server)
    {
        await using var target = await StartAsync(server);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, target.Port, timeout.Token);

        // HTTP/2 by hand (prior knowledge): the preface, empty SETTINGS, then one Watch call.
        var headers = new List<byte>();
        foreach (var (name, value) in new[] { (":method", "POST"), (":scheme", "http"), (":path", "/etcdserverpb.Watch/Watch"),
                     (":authority", target.Endpoint), ("content-type", "application/grpc"), ("te", "trailers") })
        {
            headers.Add(0); // literal header field without indexing, new name, no Huffman coding
            headers.Add((byte)name.Length);
            headers.AddRange(Encoding.ASCII.GetBytes(name));
            headers.Add((byte)value.Length);
            headers.AddRange(Encoding.ASCII.GetBytes(value));
        }
        byte[] request = new WatchRequest { CreateRequest = new WatchCreateRequest { Key = B("a") } }.ToByteArray();
        byte[] message = GrpcFrame(0, request);
        byte[] opening = [.. "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8, .. Frame(4, 0, 0, []), .. Frame(1, 4, 1, [.. headers]), .. Frame(0, 0, 1, message)];
        await socket.SendAsync(opening, SocketFlags.None, timeout.Token);

        // Until the watch's first message (a DATA frame on stream 1), acknowledging the server's SETTINGS.
        while (true)
        {
            var (type, flags, stream, payload) = await ReadFrameAsync(socket, timeout.Token);
            if (type == 4 && (flags & 1) == 0) await socket.SendAsync(Frame(4, 1, 0, []), SocketFlags.None, timeout.Token);
            if (type == 0 && stream == 1 && payload.Length > 0) break;
        }

        socket.Shutdown(SocketShutdown.Send);
        var buffer = new byte[4096];
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) > 0)
            {
                // a GOAWAY or the stream's end may come first; the close is what counts
            }
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            Assert.Fail($"{server} reset the half-closed connection instead of closing it");
        }
    }

    /// <summary>
    /// A gRPC call as HttpClient sends it, byte for byte as given: HTTP/2 with prior knowledge (as
    /// gRPC clients speak to an http:// endpoint), application/grpc, te: trailers. HttpClient
    /// enforces no grpc-timeout and checks no framing, so only the server answers.
    /// </summary>
    private static HttpRequestMessage RawGrpcRequest(ServerProcess server, string path, byte[] body, HttpMethod? method = null)
    {
        var request = new HttpRequestMessage(method ?? HttpMethod.Post, $"http://{server.Endpoint}{path}")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(body),
        };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        return request;
    }

    /// <summary>grpc-status or grpc-message: in the trailers, or in the headers of a trailers-only response ("" when absent).</summary>
    private static string GrpcTrailer(HttpResponseMessage response, string key) =>
        (response.TrailingHeaders.TryGetValues(key, out var trailer) ? trailer : response.Headers.TryGetValues(key, out var header) ? header : [""]).Single();

    // One gRPC message on the wire: its compressed flag, its length (or a length that lies), the bytes.
    private static byte[] GrpcFrame(byte flag, byte[] message, int? length = null) => [flag, .. BigEndian(length ?? message.Length), .. message];

    private static byte[] BigEndian(int value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(bytes, value);
        return bytes;
    }

    private static byte[] Frame(byte type, byte flags, int stream, byte[] payload) =>
        [.. BigEndian(payload.Length)[1..], type, flags, .. BigEndian(stream), .. payload];

    private static async Task<(byte Type, byte Flags, int Stream, byte[] Payload)> ReadFrameAsync(Socket socket, CancellationToken cancellationToken)
    {
        byte[] header = await ReadExactlyAsync(socket, 9, cancellationToken);
        int length = (header[0] << 16) | (header[1] << 8) | header[2];
        int stream = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(5)) & int.MaxValue;
        return (header[3], header[4], stream, await ReadExactlyAsync(socket, length, cancellationToken));
    }

    private static async Task<byte[]> ReadExactlyAsync(Socket socket, int count, CancellationToken cancellationToken)
    {
        var bytes = new byte[count];
        for (int at = 0; at < count;)
        {
            int n = await socket.ReceiveAsync(bytes.AsMemory(at), SocketFlags.None, cancellationToken);
            if (n == 0) throw new EndOfStreamException("the server closed the connection early");
            at += n;
        }
        return bytes;
    }

    /// <summary>
    /// A request message that does not parse gets grpc-go's Internal error (etcd's), on unary calls
    /// and on a keep-alive or watch stream alike, instead of Unknown or a quiet end of the stream.
    /// The text after the prefix is each server's own parser's.
    /// </summary>
    [Theory]
    [InlineData("etcd")]
    [InlineData("kvjournal")]
    public async Task AMalformedRequestMessageGetsEtcdsInternalError(string server)
    {
        await using var target = await StartAsync(server);
        var raw = Marshallers.Create<byte[]>(b => b, b => b);
        var invoker = target.Channel.CreateCallInvoker();
        byte[] truncated = [0x0a, 0x7f, 0x01]; // field 1 claims 127 bytes and has 1
        foreach (var (service, method) in new[] { ("etcdserverpb.KV", "Range"), ("etcdserverpb.KV", "Txn"), ("etcdserverpb.Maintenance", "Status"), ("etcdserverpb.Auth", "Authenticate") })
        {
            var error = await Assert.ThrowsAsync<RpcException>(() => invoker.AsyncUnaryCall(
                new Method<byte[], byte[]>(MethodType.Unary, service, method, raw, raw), null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(10)), truncated).ResponseAsync);
            Assert.Equal(StatusCode.Internal, error.StatusCode);
            Assert.StartsWith("grpc: error unmarshalling request: ", error.Status.Detail);
        }
        foreach (var (service, method) in new[] { ("etcdserverpb.Lease", "LeaseKeepAlive"), ("etcdserverpb.Watch", "Watch") })
        {
            using var call = invoker.AsyncDuplexStreamingCall(new Method<byte[], byte[]>(MethodType.DuplexStreaming, service, method, raw, raw), null,
                new CallOptions(deadline: DateTime.UtcNow.AddSeconds(10)));
            await call.RequestStream.WriteAsync(truncated);
            var error = await Assert.ThrowsAsync<RpcException>(async () => { while (await call.ResponseStream.MoveNext()) { } });
            Assert.Equal(StatusCode.Internal, error.StatusCode);
            Assert.StartsWith("grpc: failed to unmarshal the received message: ", error.Status.Detail);
        }
    }

    /// <summary>
    /// Keep-alive requests are read from the request body directly (GrpcMessages): a
    /// gzip-compressed one renews its lease, and one above the receive limit gets the same code and
    /// message as from etcd.
    /// </summary>
    [Fact]
    public async Task CompressedAndOversizedKeepAlivesAreAnsweredAsByEtcd()
    {
        var answers = new List<(long Ttl, StatusCode Code, string Detail)>();
        foreach (string server in new[] { "etcd", "kvjournal" })
        {
            await using var target = await StartAsync(server);
            var lease = new Lease.LeaseClient(target.Channel);
            var granted = await lease.LeaseGrantAsync(new LeaseGrantRequest { TTL = 60 });
            long ttl;
            using (var call = lease.LeaseKeepAlive(new Metadata { { "grpc-internal-encoding-request", "gzip" } }, DateTime.UtcNow.AddSeconds(10)))
            {
                await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = granted.ID });
                Assert.True(await call.ResponseStream.MoveNext());
                Assert.Equal(granted.ID, call.ResponseStream.Current.ID);
                ttl = call.ResponseStream.Current.TTL;
                await call.RequestStream.CompleteAsync();
            }
            byte[] oversized = OversizedMessage();
            var raw = Marshallers.Create<byte[]>(b => b, b => b);
            using var huge = target.Channel.CreateCallInvoker().AsyncDuplexStreamingCall(
                new Method<byte[], byte[]>(MethodType.DuplexStreaming, "etcdserverpb.Lease", "LeaseKeepAlive", raw, raw), null,
                new CallOptions(deadline: DateTime.UtcNow.AddSeconds(10)));
            try
            {
                await huge.RequestStream.WriteAsync(oversized);
            }
            catch (RpcException)
            {
                // The server may answer, and end the stream, before the whole message is sent.
            }
            var refused = await Assert.ThrowsAsync<RpcException>(async () => { while (await huge.ResponseStream.MoveNext()) { } });
            answers.Add((ttl, refused.StatusCode, refused.Status.Detail));
        }
        Assert.Equal(60, answers[0].Ttl);
        Assert.Equal(answers[0], answers[1]);
    }

    /// <summary>A request message with an unknown length-delimited field of 3 MiB: past etcd's 1.5 MiB request limit and its 512 KiB of gRPC overhead.</summary>
    private static byte[] OversizedMessage()
    {
        const int size = 3 << 20;
        var message = new byte[1 + 4 + size];
        message[0] = 0x7a; // field 15, length-delimited
        message[1] = 0x80; message[2] = 0x80; message[3] = 0xc0; message[4] = 0x01; // varint 3 MiB
        return message;
    }

    /// <summary>
    /// Unary requests are read from the request body directly (HandBoundGrpc), as keep-alives are:
    /// a gzip-compressed one is served, and one above the receive limit gets the same code and
    /// message as from etcd.
    /// </summary>
    [Fact]
    public async Task CompressedAndOversizedUnaryRequestsAreAnsweredAsByEtcd()
    {
        var answers = new List<(string Value, StatusCode Code, string Detail)>();
        foreach (string server in new[] { "etcd", "kvjournal" })
        {
            await using var target = await StartAsync(server);
            var gzip = new Metadata { { "grpc-internal-encoding-request", "gzip" } };
            await target.Kv.PutAsync(new PutRequest { Key = B("zipped"), Value = B(new string('z', 4096)) }, gzip, DateTime.UtcNow.AddSeconds(10));
            var got = await target.Kv.RangeAsync(new RangeRequest { Key = B("zipped") }, gzip, DateTime.UtcNow.AddSeconds(10));
            byte[] oversized = OversizedMessage();
            var raw = Marshallers.Create<byte[]>(b => b, b => b);
            var refused = await Assert.ThrowsAsync<RpcException>(() => target.Channel.CreateCallInvoker().AsyncUnaryCall(
                new Method<byte[], byte[]>(MethodType.Unary, "etcdserverpb.KV", "Range", raw, raw), null,
                new CallOptions(deadline: DateTime.UtcNow.AddSeconds(10)), oversized).ResponseAsync);
            answers.Add((Assert.Single(got.Kvs).Value.ToStringUtf8(), refused.StatusCode, refused.Status.Detail));
        }
        Assert.Equal(new string('z', 4096), answers[0].Value);
        Assert.Equal(StatusCode.ResourceExhausted, answers[0].Code);
        Assert.Equal(answers[0], answers[1]);
    }

    /// <summary>
    /// A method or service the server does not serve gets grpc-go's Unimplemented answer, word for
    /// word, from both servers; so do a path that names no method and a gRPC request sent with GET.
    /// </summary>
    [Fact]
    public async Task UnknownMethodsAndServicesAreAnsweredAsByEtcd()
    {
        var answers = new List<List<(StatusCode, string)>>();
        foreach (string server in new[] { "etcd", "kvjournal" })
        {
            await using var target = await StartAsync(server);
            var raw = Marshallers.Create<byte[]>(b => b, b => b);
            var invoker = target.Channel.CreateCallInvoker();
            var mine = new List<(StatusCode, string)>();
            foreach (var (service, method) in new[] { ("etcdserverpb.KV", "Scan"), ("etcdserverpb.Watch", "Unwatch"), ("etcdserverpb.Journal", "Append") })
            {
                var refused = await Assert.ThrowsAsync<RpcException>(() => invoker.AsyncUnaryCall(
                    new Method<byte[], byte[]>(MethodType.Unary, service, method, raw, raw), null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(10)), []).ResponseAsync);
                mine.Add((refused.StatusCode, refused.Status.Detail));
            }
            answers.Add(mine);
            // What HTTP/2 requests a gRPC client would not send get: a path with no method, a GET.
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            foreach (var (verb, path) in new[] { ("POST", "/etcdserverpb.KV"), ("POST", "/"), ("GET", "/etcdserverpb.KV/Range") })
            {
                using var request = RawGrpcRequest(target, path, [0, 0, 0, 0, 0], new HttpMethod(verb));
                using var response = await http.SendAsync(request);
                await response.Content.ReadAsByteArrayAsync();
                mine.Add(((StatusCode)int.Parse(GrpcTrailer(response, "grpc-status"), System.Globalization.CultureInfo.InvariantCulture),
                    $"HTTP {(int)response.StatusCode} {Uri.UnescapeDataString(GrpcTrailer(response, "grpc-message"))}"));
            }
        }
        Assert.Equal((StatusCode.Unimplemented, "unknown method Scan for service etcdserverpb.KV"), answers[0][0]);
        Assert.Equal((StatusCode.Unimplemented, "HTTP 200 malformed method name: \"/etcdserverpb.KV\""), answers[0][3]);
        Assert.Equal((StatusCode.Internal, "HTTP 405 Received a HEADERS frame with :method \"GET\" which should be POST"), answers[0][5]);
        Assert.Equal(answers[0], answers[1]);
    }

    /// <summary>
    /// gRPC's health service, which load balancers and gRPC liveness probes call: the member as a
    /// whole (service "") is SERVING, any other service unknown, on Check and on Watch alike.
    /// </summary>
    [Fact]
    public async Task HealthChecksAreAnsweredAsByEtcd()
    {
        var answers = new List<List<string>>();
        foreach (string server in new[] { "etcd", "kvjournal" })
        {
            await using var target = await StartAsync(server);
            var health = new Grpc.Health.V1.Health.HealthClient(target.Channel);
            var mine = new List<string>();
            foreach (string service in new[] { "", "etcdserverpb.KV", "grpc.health.v1.Health" })
            {
                var outcome = await Responses.CaptureAsync(() => health.CheckAsync(new HealthCheckRequest { Service = service }, deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync);
                mine.Add($"check {service}: {outcome}");
                using var watch = health.Watch(new HealthCheckRequest { Service = service }, deadline: DateTime.UtcNow.AddSeconds(10));
                Assert.True(await watch.ResponseStream.MoveNext(CancellationToken.None));
                mine.Add($"watch {service}: {watch.ResponseStream.Current.Status}");
            }
            answers.Add(mine);
        }
        Assert.Equal(["check : { \"status\": \"SERVING\" }", "watch : Serving",
            "check etcdserverpb.KV: error NotFound: unknown service", "watch etcdserverpb.KV: ServiceUnknown"], answers[0][..4]);
        Assert.Equal(answers[0], answers[1]);
    }

    /// <summary>
    /// A call whose request body is not well-framed messages (none, a cut frame, a compressed flag
    /// without an encoding, an encoding the server lacks, two messages for one) gets the same status
    /// code and text from both servers, on a unary method, a server stream and the bidi streams.
    /// </summary>
    [Fact]
    public async Task MalformedRequestFramesAreAnsweredAsByEtcd()
    {
        var methods = new (string Path, byte[] Message, bool Bidi)[]
        {
            ("/etcdserverpb.KV/Range", new RangeRequest { Key = B("k") }.ToByteArray(), false),
            ("/etcdserverpb.Maintenance/Snapshot", new SnapshotRequest().ToByteArray(), false),
            ("/etcdserverpb.Watch/Watch", new WatchRequest { CreateRequest = new WatchCreateRequest { Key = B("k") } }.ToByteArray(), true),
            ("/etcdserverpb.Lease/LeaseKeepAlive", new LeaseKeepAliveRequest { ID = 1 }.ToByteArray(), true),
        };
        var answers = new List<List<string>>();
        foreach (string server in new[] { "etcd", "kvjournal" })
        {
            await using var target = await StartAsync(server);
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            var mine = new List<string>();
            foreach (var (path, message, bidi) in methods)
            {
                var bodies = new List<(string Name, byte[] Body, string? Encoding)>
                {
                    ("a cut message", GrpcFrame(0, message, message.Length + 100), null),
                    ("compressed without an encoding", GrpcFrame(1, message), null),
                    ("a flag of 2", GrpcFrame(2, message), null),
                    ("an unknown encoding", GrpcFrame(0, message), "snappy"),
                    ("compressed with identity", GrpcFrame(1, message), "identity"),
                    ("gzip cut short", GrpcFrame(1, message), "gzip"),
                    ("not gzip", GrpcFrame(1, new byte[16]), "gzip"),
                };
                // A bidi stream whose client ends its side, or ends it before a whole header, stays open in etcd.
                if (!bidi) bodies.AddRange([("no message", [], null), ("a cut header", [0, 0, 0], null), ("two messages", [.. GrpcFrame(0, message), .. GrpcFrame(0, message)], null)]);
                foreach (var (name, body, encoding) in bodies)
                {
                    using var request = RawGrpcRequest(target, path, body);
                    if (encoding is not null) request.Headers.TryAddWithoutValidation("grpc-encoding", encoding);
                    using var response = await http.SendAsync(request);
                    byte[] answer = await response.Content.ReadAsByteArrayAsync();
                    mine.Add($"{path} {name}: {(int)response.StatusCode} status {GrpcTrailer(response, "grpc-status")} \"{Uri.UnescapeDataString(GrpcTrailer(response, "grpc-message"))}\"{(answer.Length > 0 ? " after messages" : "")}");
                }
            }
            answers.Add(mine);
        }
        output.WriteLine(string.Join('\n', answers[0]) + "\n\n" + string.Join('\n', answers[1]));
        Assert.Equal(answers[0], answers[1]);
    }

    /// <summary>
    /// A watch stream whose client ended its side (gRPC's CloseSend) stays open, as etcd keeps it:
    /// its watcher still sends events.
    /// </summary>
    [Theory]
    [InlineData("etcd")]
    [InlineData("kvjournal")]
    public async Task AWatchStreamWhoseClientEndedItsSideStillSendsEvents(string server)
    {
        await using var target = await StartAsync(server);
        using var call = new Watch.WatchClient(target.Channel).Watch(deadline: DateTime.UtcNow.AddSeconds(20));
        await call.RequestStream.WriteAsync(new WatchRequest { CreateRequest = new WatchCreateRequest { Key = B("closed-send") } });
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.True(call.ResponseStream.Current.Created);
        await target.Kv.PutAsync(new PutRequest { Key = B("closed-send"), Value = B("v") });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal("closed-send", Assert.Single(call.ResponseStream.Current.Events).Kv.Key.ToStringUtf8());
    }

    /// <summary>
    /// A call's grpc-timeout bounds its work on the server, not only the client's wait: a lock
    /// request queued behind a holder ends with DeadlineExceeded once the timeout passes and leaves
    /// no waiter behind (after the holder unlocks, the next lock is granted at once). The call is
    /// sent with HttpClient, which does not enforce the deadline itself, so only the server can end it.
    /// </summary>
    [Theory]
    [InlineData("etcd")]
    [InlineData("kvjournal")]
    public async Task AGrpcTimeoutEndsAWaitingCallOnTheServer(string server)
    {
        await using var target = await StartAsync(server);
        var leases = new Lease.LeaseClient(target.Channel);
        var locks = new V3lockpb.Lock.LockClient(target.Channel);
        long holder = (await leases.LeaseGrantAsync(new LeaseGrantRequest { TTL = 60 })).ID;
        long waiter = (await leases.LeaseGrantAsync(new LeaseGrantRequest { TTL = 60 })).ID;
        var held = await locks.LockAsync(new V3lockpb.LockRequest { Name = B("timed"), Lease = holder }, deadline: DateTime.UtcNow.AddSeconds(10));

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        byte[] message = new V3lockpb.LockRequest { Name = B("timed"), Lease = waiter }.ToByteArray();
        using var request = RawGrpcRequest(target, "/v3lockpb.Lock/Lock", GrpcFrame(0, message));
        request.Headers.TryAddWithoutValidation("grpc-timeout", "1S");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string status;
        try
        {
            using var response = await http.SendAsync(request);
            await response.Content.ReadAsByteArrayAsync();
            status = GrpcTrailer(response, "grpc-status");
        }
        catch (HttpRequestException ex) when (ex.InnerException is HttpProtocolException { ErrorCode: 0x8 })
        {
            status = "reset"; // grpc-go (etcd) may reset the stream with CANCEL at the deadline instead
        }
        Assert.Contains(status, server == "etcd" ? new[] { "4", "reset" } : new[] { "4" }); // 4: DeadlineExceeded
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(15));

        await locks.UnlockAsync(new V3lockpb.UnlockRequest { Key = held.Key }, deadline: DateTime.UtcNow.AddSeconds(10));
        var next = await locks.LockAsync(new V3lockpb.LockRequest { Name = B("timed"), Lease = waiter }, deadline: DateTime.UtcNow.AddSeconds(5));
        Assert.StartsWith("timed/", next.Key.ToStringUtf8());
    }

    /// <summary>
    /// Raising an alarm of a type etcd does not define makes etcd 3.5 panic (its applier has no
    /// case for it); KvJournal refuses it and raises nothing.
    /// </summary>
    [Fact]
    public async Task AnAlarmOfAnUnknownTypeIsRefused()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        var maintenance = new Maintenance.MaintenanceClient(kvj.Channel);
        var refused = await Assert.ThrowsAsync<RpcException>(() => maintenance.AlarmAsync(
            new AlarmRequest { Action = AlarmRequest.Types.AlarmAction.Activate, Alarm = (AlarmType)7, MemberID = 1 }).ResponseAsync);
        Assert.Equal((StatusCode.InvalidArgument, "etcdserver: unknown alarm type"), (refused.StatusCode, refused.Status.Detail));
        Assert.Empty((await maintenance.AlarmAsync(new AlarmRequest { Action = AlarmRequest.Types.AlarmAction.Get })).Alarms);
        Assert.Equal(200, (await Curl.GetAsync($"http://{kvj.Endpoint}/health")).Status);
    }

    /// <summary>With auth enabled, MemberList needs a user, as in etcd 3.5.</summary>
    [Theory]
    [InlineData("etcd")]
    [InlineData("kvjournal")]
    public async Task MemberListWithoutATokenIsRefusedWhileAuthIsOn(string server)
    {
        await using var target = await StartAsync(server);
        var auth = new Auth.AuthClient(target.Channel);
        await auth.UserAddAsync(new AuthUserAddRequest { Name = "root", Password = "rootpw" });
        await auth.UserGrantRoleAsync(new AuthUserGrantRoleRequest { User = "root", Role = "root" });
        await auth.AuthEnableAsync(new AuthEnableRequest());
        var cluster = new Etcdserverpb.Cluster.ClusterClient(target.Channel);
        var refused = await Assert.ThrowsAsync<RpcException>(() => cluster.MemberListAsync(new MemberListRequest()).ResponseAsync);
        Assert.Equal((StatusCode.InvalidArgument, "etcdserver: user name is empty"), (refused.StatusCode, refused.Status.Detail));
        string token = (await auth.AuthenticateAsync(new AuthenticateRequest { Name = "root", Password = "rootpw" })).Token;
        Assert.Single((await cluster.MemberListAsync(new MemberListRequest(), new Metadata { { "token", token } })).Members);
    }

    /// <summary>MemberList lists each member's peer URLs, as etcd always does (etcdctl's PEER ADDRS).</summary>
    [Fact]
    public async Task MemberListReportsPeerUrls()
    {
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        var theirs = await new Etcdserverpb.Cluster.ClusterClient(etcd.Channel).MemberListAsync(new MemberListRequest());
        Assert.NotEmpty(Assert.Single(theirs.Members).PeerURLs);

        await using (var byDefault = await KvJournalProcess.StartAsync())
        {
            var ours = await new Etcdserverpb.Cluster.ClusterClient(byDefault.Channel).MemberListAsync(new MemberListRequest());
            Assert.Equal(["http://localhost:2380"], Assert.Single(ours.Members).PeerURLs);
        }
        await using var advertised = await KvJournalProcess.StartAsync(null, "--initial-advertise-peer-urls", "http://10.0.0.7:2380,http://10.0.1.7:2380");
        var list = await new Etcdserverpb.Cluster.ClusterClient(advertised.Channel).MemberListAsync(new MemberListRequest());
        Assert.Equal(["http://10.0.0.7:2380", "http://10.0.1.7:2380"], Assert.Single(list.Members).PeerURLs);
    }
}
