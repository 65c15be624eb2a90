using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models;

/// <summary>
/// The start-up step that writes the built-in <c>tiny-lm</c> decoder into the repository when it is absent
/// (<c>StreamInfer:Repository:BuiltInTinyLm</c>), so the grid streams tokens with nothing to download. It runs before
/// the repository is scanned; a folder already there is left as it is.
/// </summary>
public sealed partial class BuiltInTinyLm(IOptions<ModelRepositoryOptions> options, ILogger<BuiltInTinyLm> logger)
{
    /// <summary>Writes <c>tiny-lm</c> unless it is there or turned off. A failure is logged; the model is then not served.</summary>
    public void EnsureWritten()
    {
        if (!options.Value.BuiltInTinyLm)
        {
            return;
        }

        var repository = Path.GetFullPath(options.Value.Path);
        try
        {
            if (TinyLm.EnsureIn(repository))
            {
                LogWritten(logger, Path.Combine(repository, TinyLm.Name));
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogFailed(logger, ex, repository);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Wrote the built-in tiny-lm decoder to {Path}")]
    private static partial void LogWritten(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Error, Message = "The built-in tiny-lm could not be written into {Path}; it is not served")]
    private static partial void LogFailed(ILogger logger, Exception ex, string path);
}
