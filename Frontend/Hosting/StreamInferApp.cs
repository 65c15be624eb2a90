using StreamInfer.Grains.Metrics;
using Microsoft.Extensions.Options;
using Orleans.Dashboard;
using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Grpc;
using StreamInfer.Frontend.Routing;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.KServe;
using StreamInfer.Frontend.OpenAI;
using StreamInfer.Frontend.Operations;
using StreamInfer.Frontend.Requests;
using StreamInfer.Frontend.WebSockets;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Options;

namespace StreamInfer.Frontend.Hosting;

/// <summary>
/// Builds the frontend: Kestrel with the public protocol's endpoints, co-hosting a silo (the embedded default) or, with
/// <c>StreamInfer:Frontend:CoHostSilo=false</c>, as an Orleans client of a cluster's silos.
/// </summary>
public static class StreamInferApp
{
    /// <summary>
    /// Creates the embedded-default application: one process, localhost clustering, in-memory storage,
    /// the built-in models. <paramref name="configure"/> may add configuration or services before it is built (tests).
    /// </summary>
    public static WebApplication Create(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        // The content root (where appsettings.json is read from) is the application's own folder, so the grid starts
        // with its shipped configuration whatever the working directory; --contentRoot still overrides it.
        var builder = args.Any(a => a.StartsWith("--contentRoot", StringComparison.OrdinalIgnoreCase))
            ? WebApplication.CreateBuilder(args)
            : WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder);
        builder.ListenForGrpc();
        var openAdmin = OpenAdminGuard.Check(builder.Configuration);
        AllowedHostsDefault.Apply(builder.Configuration);

        var endpoint = StreamInferClustering.Read(builder.Configuration);
        if (builder.Configuration.GetValue($"{FrontendOptions.Section}:{nameof(FrontendOptions.CoHostSilo)}", true))
        {
            builder.UseOrleans(silo =>
            {
                silo.UseStreamInferClustering(endpoint);
                silo.AddStreamInfer(builder.Configuration);
            });
        }
        else
        {
            // A cluster frontend: sockets only, an Orleans client of the silos.
            builder.UseOrleansClient(client =>
            {
                client.UseStreamInferClustering(endpoint);
                if (StreamInferDashboard.Enabled(builder.Configuration))
                {
                    client.AddDashboard();
                }
            });
        }

        builder.Services.AddStreamInferFrontend(builder.Configuration);

        // SIGTERM: the frontend drains (Frontend:DrainTimeout), then a co-hosted silo drains its batchers
        // (Placement:DrainTimeout) and stops; the host must allow both, plus Orleans' own stop.
        var frontendDrain = builder.Configuration.GetValue($"{FrontendOptions.Section}:{nameof(FrontendOptions.DrainTimeout)}", new FrontendOptions().DrainTimeout);
        var siloDrain = builder.Configuration.GetValue($"{PlacementOptions.Section}:{nameof(PlacementOptions.DrainTimeout)}", new PlacementOptions().DrainTimeout);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = frontendDrain + siloDrain + TimeSpan.FromSeconds(25));

        var app = builder.Build();
        OpenAdminGuard.WarnIfOpen(app, openAdmin);
        app.MapStreamInfer();
        return app;
    }

    /// <summary>The frontend's services: options, its identity, the request lifecycle and the delivery router.</summary>
    public static IServiceCollection AddStreamInferFrontend(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<FrontendOptions>().Bind(configuration.GetSection(FrontendOptions.Section)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<FrontendOptions>, FrontendOptionsValidator>();
        services.AddOptions<ClientSessionOptions>().Bind(configuration.GetSection(ClientSessionOptions.Section));
        services.AddOptions<AuthOptions>().Bind(configuration.GetSection(AuthOptions.Section)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<AuthOptions>, AuthOptionsValidator>();
        services.AddSingleton<ApiKeyRing>();
        services.AddSingleton<TrustedProxies>();
        services.AddSingleton<ConnectionSlots>();
        services.AddHostedService<RedisKeySource>();
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<FrontendIdentity>();
        services.AddSingleton<RequestTable>();
        services.AddGridMetrics();
        services.AddSingleton<RequestSubmitter>();
        services.AddHostedService<RequestWatchdog>();
        services.AddSingleton<DeliveryRouter>();
        services.AddHostedService(sp => sp.GetRequiredService<DeliveryRouter>());
        services.AddHostedService<StreamInfer.Frontend.Operations.ReloadSignal>();
        services.AddStreamInferMetrics();
        services.AddSingleton<FrontendDrain>();
        services.AddSingleton<ConnectionsPerAddress>();
        services.AddKestrelLimits();
        services.AddHostedService(sp => sp.GetRequiredService<FrontendDrain>());
        services.AddSingleton<GatewayLoss>();
        services.AddSingleton<IClusterConnectionStatusObserver>(sp => sp.GetRequiredService<GatewayLoss>());
        services.AddSingleton<ClusterWatch>();
        services.AddHostedService(sp => sp.GetRequiredService<ClusterWatch>());
        services.AddStreamInferGrpc();
        return services;
    }

    /// <summary>Maps the public protocol's endpoints.</summary>
    public static WebApplication MapStreamInfer(this WebApplication app)
    {
        app.UseWebSockets(new WebSocketOptions { KeepAliveInterval = TimeSpan.FromSeconds(30) });
        app.UseClientAuth();
        app.Map("/ws", WebSocketEndpoint.HandleAsync).ServesClients(RefusalShape.Protocol);
        var drain = app.Services.GetRequiredService<FrontendDrain>();
        app.MapPost("/predict", PredictEndpoint.HandleAsync).ServesClients(RefusalShape.Protocol).AddEndpointFilter(new RefuseWhileDraining(drain, e => HttpErrors.Protocol(e)));
        app.MapKServe().AddEndpointFilter(new RefuseWhileDraining(drain, e => HttpErrors.Protocol(e)));
        app.MapOpenAI().AddEndpointFilter(new RefuseWhileDraining(drain, e => OpenAIErrors.Result(e)));
        app.MapGrpcService<InferenceService>().ServesClients(RefusalShape.Grpc);
        app.MapModelAdmin();
        if (StreamInferDashboard.Enabled(app.Configuration))
        {
            // The Orleans dashboard: silos, grains and call rates, live (its page polls JSON under the same route).
            app.MapOrleansDashboard(routePrefix: StreamInferDashboard.Route).RequireAdminKeyOrBasicForReads();
        }

        app.MapHealth();
        app.MapMetrics();
        app.MapGet("/", () => Results.Text("StreamInfer: WebSocket /ws, POST /predict, KServe v2 under /v2, OpenAI-compatible under /v1. See README.md.\n"));
        return app;
    }
}
