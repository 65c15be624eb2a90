namespace StreamInfer.Grains.Models;

/// <summary>Writes a built-in model's folder into a repository in one step, so that a crash never leaves half a model.</summary>
internal static class BuiltInModelFolder
{
    /// <summary>
    /// Writes <c>&lt;repository&gt;/&lt;name&gt;</c> with <paramref name="write"/> unless that folder exists. The files
    /// go to a hidden temporary folder (the scanner skips names starting with '.') that is then renamed into place.
    /// </summary>
    /// <returns>Whether it wrote the model; false when the folder was there (or another writer got there first).</returns>
    public static bool EnsureIn(string repository, string name, Action<string> write)
    {
        var target = Path.Combine(repository, name);
        if (Directory.Exists(target))
        {
            return false;
        }

        Directory.CreateDirectory(repository);
        var temp = Path.Combine(repository, $".{name}.tmp-{Guid.NewGuid():N}");
        try
        {
            write(temp);
            try
            {
                Directory.Move(temp, target);
            }
            catch (IOException) when (Directory.Exists(target))
            {
                return false;
            }

            return true;
        }
        finally
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }
        }
    }
}
