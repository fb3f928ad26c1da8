using System.Security.Claims;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>Issues the API's bearer tokens (HS256 JWT) carrying the user id and the user's token version.</summary>
public sealed class TokenIssuer(SigningKeyProvider keys, IOptions<StreamSpaceOptions> options, TimeProvider time)
{
    public const string Issuer = "streamspace";
    public const string Audience = "streamspace-api";
    public const string TokenVersionClaim = "tv";

    public (string Token, DateTimeOffset ExpiresAt) Issue(UserRecord user)
    {
        var now = time.GetUtcNow();
        var expires = now + options.Value.TokenLifetime;
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Audience = Audience,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = expires.UtcDateTime,
            SigningCredentials = new SigningCredentials(keys.Key, SecurityAlgorithms.HmacSha256),
            Subject = new ClaimsIdentity(
            [
                new Claim(JwtRegisteredClaimNames.Sub, user.Id),
                new Claim(JwtRegisteredClaimNames.UniqueName, user.Username),
                new Claim(TokenVersionClaim, user.TokenVersion.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                new Claim(JwtRegisteredClaimNames.Jti, Guid.NewGuid().ToString("N")),
            ]),
        };
        return (new JsonWebTokenHandler().CreateToken(descriptor), expires);
    }
}
