using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// The HTTP/JSON gateway against the reference etcd's: the same POSTs (with curl, as etcd's docs
/// show) give the same HTTP status and the same JSON, once the header fields that name the member
/// and the values that are random by design (tokens, remaining TTL) are set aside.
/// </summary>
public sealed class GatewayTests
{
    // (path, body); "TOKEN" in a path's place sends the last token as the Authorization header.
    private static readonly (string Path, string Body)[] Script =
    [
        ("/v3/kv/put", """{"key":"Zm9v","value":"YmFy"}"""),
        ("/v3/kv/range", """{"key":"Zm9v"}"""),
        ("/v3/kv/put", """{"key":"Zm9v","value":"YmF6","prev_kv":true}"""),
        ("/v3/kv/put", """{"key":"Zm9vMg==","value":"eA=="}"""),
        ("/v3/kv/range", """{"key":"Zg==","range_end":"Zw==","count_only":true}"""),
        ("/v3/kv/range", """{"key":"Zg==","range_end":"Zw==","limit":"1","sort_order":"DESCEND","keys_only":true}"""),
        ("/v3/kv/range", """{"key":"Zm9v","revision":"100"}"""),
        ("/v3/kv/range", ""),
        ("/v3/kv/put", """{"value":"YmFy"}"""),
        ("/v3/kv/txn", """{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmF6"}],"success":[{"request_put":{"key":"dA==","value":"MQ=="}},{"request_range":{"key":"Zm9v"}}],"failure":[{"request_range":{"key":"dA=="}}]}"""),
        ("/v3/kv/txn", """{"compare":[{"key":"Zm9v","result":"GREATER","target":"MOD","mod_revision":"100"}],"failure":[{"requestRange":{"key":"dA=="}}]}"""),
        ("/v3/kv/deleterange", """{"key":"Zm9vMg==","prev_kv":true}"""),
        ("/v3/lease/grant", """{"ID":"4660","TTL":"60"}"""),
        ("/v3/lease/grant", """{"ID":"4660","TTL":"60"}"""),
        ("/v3/kv/put", """{"key":"bGVhc2Vk","value":"eA==","lease":"4660"}"""),
        ("/v3/lease/timetolive", """{"ID":"4660","keys":true}"""),
        ("/v3/kv/lease/timetolive", """{"ID":"99"}"""),
        ("/v3/lease/leases", "{}"),
        ("/v3/lease/revoke", """{"ID":"4660"}"""),
        ("/v3/kv/lease/revoke", """{"ID":"4660"}"""),
        ("/v3/kv/range", """{"key":"bGVhc2Vk"}"""),
        // 64-bit integers as JSON numbers stay exact (a double would make ...729 into ...912).
        ("/v3/lease/grant", """{"ID":5475446664699814729,"TTL":60}"""),
        ("/v3/kv/put", """{"key":"bnVtYmVy","value":"eA==","lease":5475446664699814729}"""),
        ("/v3/lease/timetolive", """{"ID":5475446664699814729,"keys":true}"""),
        ("/v3/lease/revoke", """{"ID":5475446664699814729}"""),
        ("/v3/kv/compaction", """{"revision":"3"}"""),
        ("/v3/kv/range", """{"key":"Zm9v","revision":"2"}"""),
        ("/v3/kv/unknown", "{}"),
        ("/v3/auth/user/add", """{"name":"root","password":"rootpw"}"""),
        ("/v3/auth/user/grant", """{"user":"root","role":"root"}"""),
        ("/v3/auth/role/add", """{"name":"root"}"""),
        ("/v3/auth/enable", "{}"),
        ("/v3/kv/range", """{"key":"Zm9v"}"""),
        ("/v3/auth/authenticate", """{"name":"root","password":"wrong"}"""),
        ("/v3/auth/authenticate", """{"name":"root","password":"rootpw"}"""),
        ("TOKEN /v3/kv/range", """{"key":"Zm9v"}"""),
        ("TOKEN /v3/auth/user/list", "{}"),
        ("TOKEN /v3/auth/role/get", """{"role":"root"}"""),
        ("TOKEN /v3/auth/status", "{}"),
        ("TOKEN /v3/auth/disable", "{}"),
        ("/v3/kv/range", """{"key":"Zm9v"}"""),
    ];

    [Fact]
    public async Task JsonGatewayAnswersAsEtcdDoes()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        var theirs = await RunAsync(etcd);
        var ours = await RunAsync(kvj);
        for (int i = 0; i < Script.Length; i++)
            Assert.True(theirs[i] == ours[i], $"POST {Script[i].Path} {Script[i].Body}\n etcd:      {theirs[i]}\n kvjournal: {ours[i]}");
    }

    [Fact]
    public async Task StreamedWatchMatchesEtcd()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        Assert.Equal(await WatchAsync(etcd), await WatchAsync(kvj));
    }

    private static async Task<List<string>> RunAsync(ServerProcess server)
    {
        var results = new List<string>();
        string token = "";
        foreach (var (path, body) in Script)
        {
            bool withToken = path.StartsWith("TOKEN ", StringComparison.Ordinal);
            string url = $"http://{server.Endpoint}{(withToken ? path[6..] : path)}";
            string[] options = withToken ? ["-X", "POST", "-H", $"Authorization: {token}", "-d", body] : ["-X", "POST", "-d", body];
            var response = await Curl.GetAsync(url, options);
            var json = JsonNode.Parse(response.Body)!;
            if (json["token"] is { } t) token = t.GetValue<string>();
            results.Add($"{response.Status} {Normalize(json)}");
        }
        return results;
    }

    // A watch over the gateway: the created line, then one line per put, read as they stream.
    private static async Task<List<string>> WatchAsync(ServerProcess server)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        using var request = new HttpRequestMessage(HttpMethod.Post, $"http://{server.Endpoint}/v3/watch")
        {
            Content = new StringContent("""{"create_request":{"key":"dw==","range_end":"eA==","prev_kv":true}}""", Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var lines = new List<string> { $"{(int)response.StatusCode}", Normalize(JsonNode.Parse((await reader.ReadLineAsync())!)!) };
        foreach (var (key, value) in new[] { ("dzE=", "YQ=="), ("dzE=", "Yg=="), ("dzI=", "Yw==") })
            await Curl.GetAsync($"http://{server.Endpoint}/v3/kv/put", "-X", "POST", "-d", $$"""{"key":"{{key}}","value":"{{value}}"}""");
        await Curl.GetAsync($"http://{server.Endpoint}/v3/kv/deleterange", "-X", "POST", "-d", """{"key":"dzE="}""");
        int events = 0;
        while (events < 4)
        {
            var line = JsonNode.Parse((await reader.ReadLineAsync())!)!;
            events += line["result"]?["events"]?.AsArray().Count ?? 0;
            lines.Add(Normalize(line));
        }
        return lines;
    }

    // Drops what names the member (cluster_id, member_id, raft_term) and what is random by design.
    private static string Normalize(JsonNode node)
    {
        Strip(node);
        return node.ToJsonString(new JsonSerializerOptions { WriteIndented = false });
    }

    private static void Strip(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var name in new[] { "cluster_id", "member_id", "raft_term" }) o.Remove(name);
                if (o.ContainsKey("token")) o["token"] = "<token>";
                if (o.ContainsKey("grantedTTL")) o.Remove("TTL"); // remaining seconds: 59 or 60 by timing
                foreach (var (_, child) in o) Strip(child);
                break;
            case JsonArray a:
                foreach (var child in a) Strip(child);
                break;
        }
    }
}
