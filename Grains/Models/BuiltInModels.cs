using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Models.Stateful;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models;

/// <summary>
/// The start-up step that writes the built-in models into the repository when they are absent: the <c>tiny-lm</c>
/// decoder (<c>StreamInfer:Repository:BuiltInTinyLm</c>) and the stateful <c>vad-lite</c>
/// (<c>StreamInfer:Repository:BuiltInVadLite</c>), so the grid streams tokens and audio with nothing to download. It
/// runs before the repository is scanned; a folder already there is left as it is.
/// </summary>
public sealed partial class BuiltInModels(IOptions<ModelRepositoryOptions> options, ILogger<BuiltInModels> logger)
{
    /// <summary>Writes each built-in model that is turned on and absent. A failure is logged; that model is then not served.</summary>
    public void EnsureWritten()
    {
        var repository = Path.GetFullPath(options.Value.Path);
        if (options.Value.BuiltInTinyLm)
        {
            Ensure(repository, TinyLm.Name, () => TinyLm.EnsureIn(repository));
        }

        if (options.Value.BuiltInVadLite)
        {
            Ensure(repository, VadLite.Name, () => VadLite.EnsureIn(repository));
        }
    }

    private void Ensure(string repository, string name, Func<bool> write)
    {
        try
        {
            if (write())
            {
                LogWritten(logger, name, Path.Combine(repository, name));
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogFailed(logger, ex, name, repository);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Wrote the built-in model {Model} to {Path}")]
    private static partial void LogWritten(ILogger logger, string model, string path);

    [LoggerMessage(Level = LogLevel.Error, Message = "The built-in model {Model} could not be written into {Path}; it is not served")]
    private static partial void LogFailed(ILogger logger, Exception ex, string model, string path);
}
