using System.Buffers;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using Microsoft.AspNetCore.Http;

namespace KvJournal.Server.Api.Gateway;

/// <summary>
/// One JSON gateway request: the JSON it reads and writes (etcd's grpc-gateway encoding: proto
/// field names, 64-bit integers as strings, bytes as base64, default values left out) and the
/// error bodies, with the status from the one error table.
/// </summary>
internal sealed class GatewayCall(HttpContext http)
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));
    // grpc-gateway ignores fields it does not know.
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    public HttpContext Http => http;

    /// <summary>
    /// Who the request says it is: the token in the Authorization header, as grpc-gateway forwards
    /// it. etcd's gateway is a gRPC client of its own, so the HTTP client's certificate names no user.
    /// </summary>
    public CallerIdentity Who(ShardServer face) =>
        face.AuthEnabled && http.Request.Headers.Authorization is { Count: > 0 } auth ? new CallerIdentity(auth.ToString(), null) : CallerIdentity.None;

    /// <summary>The request messages in the body: none, one, or several JSON objects one after another.</summary>
    public async Task<List<T>> ReadRequestsAsync<T>(MessageParser<T> parser) where T : IMessage<T>, new()
    {
        using var body = new MemoryStream();
        await http.Request.Body.CopyToAsync(body, http.RequestAborted).ConfigureAwait(false);
        var requests = new List<T>();
        var bytes = body.GetBuffer().AsMemory(0, (int)body.Length);
        var reader = new Utf8JsonReader(bytes.Span, new JsonReaderOptions { AllowMultipleValues = true });
        while (true)
        {
            long start = reader.BytesConsumed;
            try
            {
                if (!reader.Read()) break;
                reader.Skip();
            }
            catch (JsonException ex)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, ex.Message));
            }
            string json = ExactIntegers(bytes.Span[(int)start..(int)reader.BytesConsumed]);
            try
            {
                requests.Add(Parser.Parse<T>(json));
            }
            catch (InvalidProtocolBufferException ex)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, ex.Message));
            }
        }
        return requests;
    }

    /// <summary>
    /// The JSON of one request with every integer longer than a double holds exactly (more than 15
    /// digits) turned into a string. Google.Protobuf's parser reads JSON numbers as doubles, so a
    /// lease ID 5475446664699814729 would arrive as 5475446664699814912; grpc-gateway keeps them
    /// exact, and the parser reads a string exactly into an int64 or uint64 field (etcd's messages
    /// have no floating-point fields).
    /// </summary>
    private static string ExactIntegers(ReadOnlySpan<byte> json)
    {
        var scan = new Utf8JsonReader(json);
        bool any = false;
        while (!any && scan.Read()) any = scan.TokenType == JsonTokenType.Number && IsLongInteger(scan.ValueSpan);
        if (!any) return Encoding.UTF8.GetString(json);

        var buffer = new ArrayBufferWriter<byte>(json.Length + 16);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            var reader = new Utf8JsonReader(json);
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject: writer.WriteStartObject(); break;
                    case JsonTokenType.EndObject: writer.WriteEndObject(); break;
                    case JsonTokenType.StartArray: writer.WriteStartArray(); break;
                    case JsonTokenType.EndArray: writer.WriteEndArray(); break;
                    case JsonTokenType.PropertyName: writer.WritePropertyName(reader.GetString()!); break;
                    case JsonTokenType.String: writer.WriteStringValue(reader.GetString()); break;
                    case JsonTokenType.Number when IsLongInteger(reader.ValueSpan): writer.WriteStringValue(reader.ValueSpan); break;
                    case JsonTokenType.Number: writer.WriteRawValue(reader.ValueSpan, skipInputValidation: true); break;
                    case JsonTokenType.True: writer.WriteBooleanValue(true); break;
                    case JsonTokenType.False: writer.WriteBooleanValue(false); break;
                    default: writer.WriteNullValue(); break;
                }
            }
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static bool IsLongInteger(ReadOnlySpan<byte> number)
    {
        if (number.IndexOfAny("."u8[0], (byte)'e', (byte)'E') >= 0) return false;
        return number.Length - (number[0] == (byte)'-' ? 1 : 0) > 15;
    }

    public Task WriteUnaryAsync(IMessage response)
    {
        http.Response.ContentType = "application/json";
        return http.Response.WriteAsync(Formatter.Format(response), http.RequestAborted);
    }

    /// <summary>One message of a stream: {"result": …} on its own line, flushed at once.</summary>
    public async Task WriteStreamedAsync(IMessage message)
    {
        if (!http.Response.HasStarted)
        {
            http.Response.ContentType = "application/json";
            await http.Response.StartAsync(http.RequestAborted).ConfigureAwait(false);
        }
        // One write, so one HTTP chunk per message as etcd's gateway sends it: clients parse a
        // chunk as one message (written piecewise, a large event spanned several 4 KiB chunks).
        byte[] line = Encoding.UTF8.GetBytes($"{{\"result\":{Formatter.Format(message)}}}\n");
        await http.Response.Body.WriteAsync(line, http.RequestAborted).ConfigureAwait(false);
        await http.Response.Body.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>
    /// A failed call: before any output, grpc-gateway's status and {"code","message"} body; inside a
    /// stream, its {"error": …} line.
    /// </summary>
    public async Task WriteErrorAsync(Exception ex)
    {
        var status = EtcdErrors.StatusOf(ex) ?? new Status(StatusCode.Internal, ex.Message);
        int httpStatus = HttpStatusOf(status.StatusCode);
        if (!http.Response.HasStarted)
        {
            http.Response.StatusCode = httpStatus;
            http.Response.ContentType = "application/json";
            await http.Response.Body.WriteAsync(Json(json =>
            {
                json.WriteNumber("code", (int)status.StatusCode);
                json.WriteString("message", status.Detail);
            }), http.RequestAborted).ConfigureAwait(false);
            return;
        }
        await http.Response.Body.WriteAsync(Json(json =>
        {
            json.WriteStartObject("error");
            json.WriteNumber("grpc_code", (int)status.StatusCode);
            json.WriteNumber("http_code", httpStatus);
            json.WriteString("message", status.Detail);
            json.WriteString("http_status", Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(httpStatus));
            json.WriteEndObject();
        }, lineEnd: true), http.RequestAborted).ConfigureAwait(false);
    }

    // One JSON object written field by field: no reflection-based serializer, so it works trimmed and AOT-compiled.
    private static ReadOnlyMemory<byte> Json(Action<Utf8JsonWriter> fields, bool lineEnd = false)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            fields(json);
            json.WriteEndObject();
        }
        if (lineEnd) buffer.Write("\n"u8);
        return buffer.WrittenMemory;
    }

    // grpc-gateway's HTTPStatusFromCode.
    private static int HttpStatusOf(StatusCode code) => code switch
    {
        StatusCode.OK => 200,
        StatusCode.Cancelled => 408,
        StatusCode.InvalidArgument or StatusCode.FailedPrecondition or StatusCode.OutOfRange => 400,
        StatusCode.DeadlineExceeded => 504,
        StatusCode.NotFound => 404,
        StatusCode.AlreadyExists or StatusCode.Aborted => 409,
        StatusCode.PermissionDenied => 403,
        StatusCode.Unauthenticated => 401,
        StatusCode.ResourceExhausted => 429,
        StatusCode.Unimplemented => 501,
        StatusCode.Unavailable => 503,
        _ => 500,
    };
}
