using System.Text.Json;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Http;

namespace StreamInfer.Frontend.Operations;

/// <summary>
/// Health for orchestrators: <c>/healthz</c> (live: the process answers), <c>/readyz</c> and KServe's
/// <c>/v2/health/ready</c> (ready: send traffic here). Ready means the repository has finished loading, every model
/// that did not fail is loaded and warm on at least one device (at least one model is), and the frontend is not
/// draining. A model that failed to load does not hold readiness back (the others serve); it is listed under
/// <c>failed</c>, with per-model state under <c>models</c>.
/// </summary>
internal static class HealthEndpoints
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static WebApplication MapHealth(this WebApplication app)
    {
        app.MapGet("/healthz", () => Results.Text("ok"));
        app.MapGet("/readyz", ReadyAsync);
        return app;
    }

    /// <summary>Writes readiness: 200 when ready, else 503.</summary>
    public static async Task ReadyAsync(HttpContext context, IClusterClient client, FrontendDrain drain)
    {
        RepositoryStatus status;
        try
        {
            status = await client.GetGrain<IModelInfoGrain>(0).GetRepositoryAsync().WaitAsync(TimeSpan.FromSeconds(5), context.RequestAborted);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !context.RequestAborted.IsCancellationRequested)
        {
            // No silo answers (a cluster frontend before its silos, or while they move): not ready.
            // The exception's text names silos and internals: the caller learns only that none answered.
            await HttpErrors.WriteAsync(context, new InferError(ErrorCode.ModelUnavailable, "no silo answered.", 1000));
            return;
        }

        var models = status.Models.Select(m => new ModelReadiness(m.Name, m.Version, m.State.ToString().ToLowerInvariant(), m.Devices)).ToList();
        var ready = IsReady(status, drain.IsDraining);
        context.Response.StatusCode = ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
        await context.Response.WriteAsJsonAsync(
            new Readiness(ready, drain.IsDraining, status.Loading, models, [.. status.Models.Where(m => m.State == ModelState.Failed).Select(m => m.Name)]),
            Json,
            context.RequestAborted);
    }

    /// <summary>Whether the frontend should be sent inference: not draining, and the repository loaded and serving.</summary>
    internal static bool IsReady(RepositoryStatus status, bool draining)
        => !draining
            && !status.Loading
            && status.Models.Any(m => m.State == ModelState.Ready)
            && status.Models.All(m => m.State != ModelState.Loading);

    private sealed record Readiness(bool Ready, bool Draining, bool Loading, List<ModelReadiness> Models, List<string> Failed);

    private sealed record ModelReadiness(string Name, string Version, string State, System.Collections.Immutable.ImmutableArray<string> Devices);
}
