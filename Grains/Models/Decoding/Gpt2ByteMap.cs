namespace StreamInfer.Grains.Models.Decoding;

/// <summary>
/// GPT-2's byte-to-unicode remapping, by which byte-level BPE vocabularies spell bytes as printable characters: the
/// bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' stand for themselves, and the other 68 bytes, in increasing order, for
/// U+0100, U+0101, ... (so a space, 0x20, is 'Ġ', U+0120).
/// </summary>
internal static class Gpt2ByteMap
{
    private static readonly char[] s_byteToChar = CreateByteToChar();
    private static readonly short[] s_charToByte = CreateCharToByte(s_byteToChar);

    /// <summary>The character byte <paramref name="b"/> is spelled with.</summary>
    public static char ToChar(byte b) => s_byteToChar[b];

    /// <summary>The byte that <paramref name="c"/> spells, or -1 when it spells none.</summary>
    public static int ToByte(char c) => c < s_charToByte.Length ? s_charToByte[c] : -1;

    private static bool StandsForItself(int b) => b is >= '!' and <= '~' or >= '¡' and <= '¬' or >= '®' and <= 'ÿ';

    private static char[] CreateByteToChar()
    {
        var map = new char[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            map[b] = StandsForItself(b) ? (char)b : (char)next++;
        }
        return map;
    }

    private static short[] CreateCharToByte(char[] byteToChar)
    {
        var map = new short[512];
        Array.Fill(map, (short)-1);
        for (var b = 0; b < byteToChar.Length; b++)
        {
            map[byteToChar[b]] = (short)b;
        }
        return map;
    }
}
