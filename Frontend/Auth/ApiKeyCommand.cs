namespace StreamInfer.Frontend.Auth;

/// <summary>
/// <c>--hash-key</c>: prints the hash to put in <see cref="ApiKeyOptions.Hash"/> for a key read from standard input (one
/// line; a key on the command line would stay in the shell's history), or with <c>--new-key</c> makes a random key and
/// prints it with its hash.
/// </summary>
public static class ApiKeyCommand
{
    /// <summary>Runs the command when <paramref name="args"/> ask for it; false otherwise (the grid starts).</summary>
    public static bool TryRun(string[] args, TextReader input, TextWriter output)
    {
        if (args.Contains("--new-key"))
        {
            // 32 random bytes as URL-safe base64: 43 characters, all valid in an HTTP token and a WebSocket subprotocol.
            var key = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
            output.WriteLine($"key:  {key}");
            output.WriteLine($"hash: {ApiKeyRing.Hash(key)}");
            return true;
        }

        if (!args.Contains("--hash-key"))
        {
            return false;
        }

        var line = input.ReadLine();
        if (string.IsNullOrEmpty(line))
        {
            output.WriteLine("--hash-key reads the key from standard input: printf %s \"$KEY\" | dotnet run --project Frontend -- --hash-key");
            return true;
        }

        output.WriteLine(ApiKeyRing.Hash(line));
        return true;
    }
}
