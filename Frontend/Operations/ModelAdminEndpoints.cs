using System.Text.Json;
using System.Text.Json.Serialization;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.Routing;

namespace StreamInfer.Frontend.Operations;

/// <summary>
/// Model operations: <c>POST /api/models/{name}/rollout</c> <c>{"version": "2"}</c>, <c>POST /api/models/{name}/rollback</c>
/// and <c>GET /api/models/{name}</c>, through the model's <see cref="IModelVersionGrain"/>. A rollout answers when it has
/// ended: 200 committed, 422 aborted (the failures say which silo and why; the old version still serves), 409 refused
/// (another rollout is under way, or the version already serves). <c>POST /api/reload</c> (and SIGHUP, see
/// <see cref="ReloadSignal"/>) re-reads the repository.
/// </summary>
internal static class ModelAdminEndpoints
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    public static WebApplication MapModelAdmin(this WebApplication app)
    {
        app.MapGet("/api/models/{name}", StatusAsync);
        app.MapPost("/api/models/{name}/rollout", RolloutAsync).RequireAdminKey();
        app.MapPost("/api/models/{name}/rollback", RollbackAsync).RequireAdminKey();
        app.MapPost("/api/reload", ReloadAsync).RequireAdminKey();
        app.MapGet("/api/cluster", ClusterAsync);
        return app;
    }

    /// <summary>The cluster's silos as membership has them now (name, address, status), and this frontend's id.</summary>
    private static async Task ClusterAsync(HttpContext context, ClusterWatch watch, FrontendIdentity identity)
    {
        System.Collections.Immutable.ImmutableArray<SiloView> silos;
        try
        {
            silos = await watch.ReadAsync();
        }
        catch (Exception ex)
        {
            // Membership lives in Redis: while it is unreachable (or no silo answers) say so, as a 503.
            await HttpErrors.WriteAsync(context, new InferError(ErrorCode.ModelUnavailable, $"the cluster's membership could not be read: {ex.GetType().Name}."));
            return;
        }

        await context.Response.WriteAsJsonAsync(new { Frontend = identity.Id, Active = silos.Count(s => s.Status == nameof(SiloStatus.Active)), Silos = silos }, Json);
    }

    /// <summary>Reads the repository again on every silo: new models load, removed ones unload, changed versions roll out.</summary>
    private static Task ReloadAsync(HttpContext context, IClusterClient client, ILoggerFactory loggers)
        => GrainCallErrors.GuardAsync(context, Logger(loggers), "the reload", async () =>
        {
            var report = await client.GetGrain<IRepositoryGrain>(RepositoryKey).ReloadAsync();
            await context.Response.WriteAsJsonAsync(report, Json);
        });

    /// <summary>The key of the cluster's one repository grain.</summary>
    internal const string RepositoryKey = "repository";

    private static Task StatusAsync(HttpContext context, IClusterClient client, ILoggerFactory loggers, string name)
        => GrainCallErrors.GuardAsync(context, Logger(loggers), "the model's status", async () =>
        {
            if (!await KnownAsync(context, client, name))
            {
                return;
            }

            var status = await client.GetGrain<IModelVersionGrain>(name).GetStatusAsync();
            await context.Response.WriteAsJsonAsync(status, Json);
        });

    private static Task RolloutAsync(HttpContext context, IClusterClient client, ILoggerFactory loggers, string name)
        => GrainCallErrors.GuardAsync(context, Logger(loggers), "the rollout", () => RollOutAsync(context, client, name));

    private static async Task RollOutAsync(HttpContext context, IClusterClient client, string name)
    {
        if (!await KnownAsync(context, client, name))
        {
            return;
        }

        string? version = null;
        try
        {
            using var body = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
            if (body.RootElement.ValueKind == JsonValueKind.Object && body.RootElement.TryGetProperty("version", out var v))
            {
                version = v.ValueKind switch
                {
                    JsonValueKind.String => v.GetString(),
                    JsonValueKind.Number => v.GetRawText(),
                    _ => null,
                };
            }
        }
        catch (JsonException)
        {
        }

        if (string.IsNullOrWhiteSpace(version))
        {
            await HttpErrors.WriteAsync(context, new InferError(ErrorCode.BadRequest, "the body must be {\"version\": \"<a version folder of the model>\"}."));
            return;
        }

        await WriteOutcomeAsync(context, await client.GetGrain<IModelVersionGrain>(name).RolloutAsync(version));
    }

    private static Task RollbackAsync(HttpContext context, IClusterClient client, ILoggerFactory loggers, string name)
        => GrainCallErrors.GuardAsync(context, Logger(loggers), "the rollback", async () =>
        {
            if (await KnownAsync(context, client, name))
            {
                await WriteOutcomeAsync(context, await client.GetGrain<IModelVersionGrain>(name).RollbackAsync());
            }
        });

    private static ILogger Logger(ILoggerFactory loggers) => loggers.CreateLogger(typeof(ModelAdminEndpoints));

    private static async Task WriteOutcomeAsync(HttpContext context, RolloutState rollout)
    {
        context.Response.StatusCode = rollout.Phase switch
        {
            RolloutPhases.Committed => StatusCodes.Status200OK,
            RolloutPhases.Refused => StatusCodes.Status409Conflict,
            _ => StatusCodes.Status422UnprocessableEntity,
        };
        await context.Response.WriteAsJsonAsync(rollout, Json);
    }

    private static async Task<bool> KnownAsync(HttpContext context, IClusterClient client, string name)
    {
        if (await client.GetGrain<IModelInfoGrain>(0).GetModelAsync(name) is not null)
        {
            return true;
        }

        await HttpErrors.WriteAsync(context, new InferError(ErrorCode.UnknownModel, $"no model named '{name}' is served."));
        return false;
    }
}
