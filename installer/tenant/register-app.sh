#!/usr/bin/env bash
# Register Lifeboat in your Microsoft Entra ID tenant with the Azure CLI, instead of clicking through
# the Entra admin center (docs/operations.md, "Use it with your tenant", says what each step is for).
#
#   az login --tenant contoso.onmicrosoft.com --allow-no-subscriptions   # as an admin who may consent
#   installer/tenant/register-app.sh [display name]                      # default: Lifeboat
#
# It creates (or updates, when an app of that name exists) a single-tenant public-client app with:
#   - the delegated Microsoft Graph permissions Lifeboat asks for, nothing more (desktop/auth.py);
#   - the redirect URIs of the system browser (http://localhost) and of WAM, Windows' sign-in broker
#     (ms-appx-web://Microsoft.AAD.BrokerPlugin/<client id>);
#   - "Allow public client flows" (device code sign-in: `lifeboat login --device-code`);
#   - admin consent for the organisation, so no user is asked to consent.
# It prints the TENANTID and CLIENTID to give the MSI (or the [account] section of the config).
set -euo pipefail

NAME="${1:-Lifeboat}"
GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"  # Microsoft Graph
PERMISSIONS=(  # delegated ("Scope") permission ids, Microsoft Graph permissions reference
  "024d486e-b451-40bb-833d-3e66d98c5c73=Scope"  # Mail.ReadWrite
  "e383f46e-2787-4529-855e-0e479a3ffac0=Scope"  # Mail.Send
  "e1fe6dd8-ba31-4d61-89e7-88639da4683d=Scope"  # User.Read
  "37f7f235-527c-4136-accd-4a02d197296e=Scope"  # openid
  "14dad69e-099b-42c9-810b-d002981feec1=Scope"  # profile
  "7427e0e9-2fba-42fe-b0c0-848c9e6a8182=Scope"  # offline_access
)

command -v az >/dev/null || { echo "register-app: the Azure CLI (az) is not installed" >&2; exit 2; }
tenant_id="$(az account show --query tenantId --output tsv 2>/dev/null)" || {
  echo "register-app: not signed in: run az login --tenant <your tenant> --allow-no-subscriptions" >&2
  exit 2
}

app_id="$(az ad app list --display-name "$NAME" --query "[0].appId" --output tsv)"
if [[ -z "$app_id" ]]; then
  app_id="$(az ad app create --display-name "$NAME" --sign-in-audience AzureADMyOrg \
    --is-fallback-public-client true --public-client-redirect-uris "http://localhost" \
    --query appId --output tsv)"
  echo "created the app registration $NAME ($app_id)"
else
  echo "updating the existing app registration $NAME ($app_id)"
fi

# the broker's redirect URI names the client id, so it can only be set once the app exists
az ad app update --id "$app_id" --is-fallback-public-client true \
  --public-client-redirect-uris "http://localhost" "ms-appx-web://Microsoft.AAD.BrokerPlugin/$app_id"
az ad app permission add --id "$app_id" --api "$GRAPH_APP_ID" --api-permissions "${PERMISSIONS[@]}" \
  --only-show-errors
az ad sp show --id "$app_id" >/dev/null 2>&1 || az ad sp create --id "$app_id" --only-show-errors >/dev/null

# admin consent for the whole organisation; a new app takes a little while to reach every directory replica
for attempt in 1 2 3 4 5 6; do
  if az ad app permission admin-consent --id "$app_id" --only-show-errors; then
    break
  fi
  if [[ "$attempt" == 6 ]]; then
    echo "register-app: admin consent failed; grant it in the Entra admin center (App registrations >" \
      "$NAME > API permissions > Grant admin consent)" >&2
    exit 1
  fi
  sleep 10
done

cat <<DONE

Done. Give Lifeboat these values:
  MSI:    msiexec /i Lifeboat.msi TENANTID=$tenant_id CLIENTID=$app_id ...
  config: [account]
          tenant = "$tenant_id"
          client_id = "$app_id"
Then: lifeboat login, lifeboat doctor, lifeboat run.
DONE
