// Smoke test of the generated Kotlin client (clients/kotlin) against a live server.
//
// Usage: java ... SmokeKt <base-url> <api-key>
// Prints one line per check, `SMOKE_DEVICES <group> <device-a> <device-b>` for the caller's
// database checks, and exits 1 if any check failed (2 on an unexpected exception).
package com.phonemanager.smoke

import com.phonemanager.client.apis.DevicesApi
import com.phonemanager.client.apis.HealthApi
import com.phonemanager.client.apis.KeysApi
import com.phonemanager.client.apis.LocationsApi
import com.phonemanager.client.infrastructure.ApiClient
import com.phonemanager.client.infrastructure.ClientError
import com.phonemanager.client.infrastructure.ClientException
import com.phonemanager.client.infrastructure.Serializer
import com.phonemanager.client.infrastructure.Success
import com.phonemanager.client.models.BatchLocation
import com.phonemanager.client.models.ErrorBody
import com.phonemanager.client.models.Platform
import com.phonemanager.client.models.RegisterDeviceRequest
import com.phonemanager.client.models.UploadLocationBatchRequest
import com.phonemanager.client.models.UploadLocationRequest
import java.util.UUID
import kotlin.system.exitProcess
import okhttp3.OkHttpClient

private var failures = 0

private fun check(what: String, ok: Boolean, detail: () -> Any? = { null }) {
    if (ok) {
        println("  ok   $what")
    } else {
        failures++
        println("  FAIL $what${detail()?.let { ": $it" } ?: ""}")
    }
}

/** The error envelope of a 4xx answer, read as clients/kotlin/README.md shows. */
private fun ClientException.errorBody(): ErrorBody? = parseError((response as? ClientError<*>)?.body)

private fun parseError(body: Any?): ErrorBody? =
    (body as? String)?.let { runCatching { Serializer.gson.fromJson(it, ErrorBody::class.java) }.getOrNull() }

private fun header(headers: Map<String, List<String>>, name: String): String? =
    headers.entries.firstOrNull { it.key.equals(name, ignoreCase = true) }?.value?.firstOrNull()

private inline fun expectClientError(what: String, status: Int, code: String, call: () -> Unit): ErrorBody? {
    try {
        call()
        check(what, false) { "expected HTTP $status, the call succeeded" }
    } catch (e: ClientException) {
        val body = e.errorBody()
        check(what, e.statusCode == status && body?.error == code) {
            "expected $status/$code, got ${e.statusCode}/${body?.error} (${(e.response as? ClientError<*>)?.body})"
        }
        return body
    }
    return null
}

fun main(args: Array<String>) {
    if (args.size != 2) {
        System.err.println("usage: SmokeKt <base-url> <api-key>")
        exitProcess(64)
    }
    val (baseUrl, apiKey) = args
    try {
        run(baseUrl, apiKey)
    } catch (e: Exception) {
        println("  FAIL unexpected exception")
        e.printStackTrace(System.out)
        exitProcess(2)
    }
    if (failures > 0) {
        println("kotlin smoke: $failures check(s) failed")
        exitProcess(1)
    }
    println("kotlin smoke: all checks passed")
}

private fun run(baseUrl: String, apiKey: String) {
    // Without a key: 401 with the error envelope.
    expectClientError("a request without X-API-Key gets 401 unauthorized", 401, "unauthorized") {
        KeysApi(baseUrl).getCurrentKey()
    }

    // The key set by an OkHttp interceptor, as the client README recommends.
    val http = OkHttpClient.Builder()
        .addInterceptor { chain -> chain.proceed(chain.request().newBuilder().header("X-API-Key", apiKey).build()) }
        .build()
    val health = HealthApi(baseUrl, http)
    val devices = DevicesApi(baseUrl, http)
    val locations = LocationsApi(baseUrl, http)
    val keys = KeysApi(baseUrl, http)

    check("readiness probe", health.getReadiness().status == "ready")
    val me = keys.getCurrentKey()
    check("GET /keys/current describes the key (interceptor)", apiKey.startsWith(me.prefix) && !me.isAdmin) { me }
    // The generated alternative: the process-wide key map read by every API instance.
    ApiClient.apiKey["X-API-Key"] = apiKey
    check("GET /keys/current with ApiClient.apiKey", KeysApi(baseUrl).getCurrentKey().prefix == me.prefix)
    ApiClient.apiKey.remove("X-API-Key")

    val group = "smoke-" + UUID.randomUUID().toString().substring(0, 8)
    val deviceA = UUID.randomUUID()
    val deviceB = UUID.randomUUID()
    println("SMOKE_DEVICES $group $deviceA $deviceB")

    // Register two devices in one group.
    val a = devices.registerDevice(RegisterDeviceRequest(deviceId = deviceA, displayName = "Alice's Phone", groupId = group))
    check("register A (platform defaults to android)", a.deviceId == deviceA && a.groupId == group && a.platform == Platform.ANDROID) { a }
    val b = devices.registerDevice(
        RegisterDeviceRequest(deviceId = deviceB, displayName = "Bob's Phone", groupId = group, platform = Platform.IOS, fcmToken = "fcm-smoke"),
    )
    check("register B (ios)", b.deviceId == deviceB && b.displayName == "Bob's Phone" && b.platform == Platform.IOS) { b }

    // A single fix for A.
    val now = System.currentTimeMillis()
    val single = UploadLocationRequest(
        deviceId = deviceA, timestamp = now - 120_000, latitude = 48.1374, longitude = 11.5755, accuracy = 12.5,
        provider = "fused", batteryLevel = 81,
    )
    val singleResult = locations.uploadLocation(single)
    check("single upload stores 1 fix", singleResult.success && singleResult.processedCount == 1) { singleResult }

    // A batch for B with an Idempotency-Key, then the same request again.
    val batch = UploadLocationBatchRequest(
        deviceId = deviceB,
        locations = listOf(
            BatchLocation(timestamp = now - 90_000, latitude = 52.5200, longitude = 13.4050, accuracy = 8.0),
            BatchLocation(timestamp = now - 30_000, latitude = 52.5210, longitude = 13.4060, accuracy = 5.0, speed = 1.4),
            BatchLocation(timestamp = now - 60_000, latitude = 52.5205, longitude = 13.4055, accuracy = 6.0),
        ),
    )
    val idemKey = UUID.randomUUID().toString()
    val first = locations.uploadLocationBatchWithHttpInfo(batch, idemKey) as Success<*>
    val firstBody = first.data as com.phonemanager.client.models.UploadResponse
    check("batch stores 3 fixes", first.statusCode == 200 && firstBody.processedCount == 3) { firstBody }
    check("first batch is not a replay", header(first.headers, "Idempotent-Replayed") == null) { first.headers }
    val retry = locations.uploadLocationBatchWithHttpInfo(batch, idemKey) as Success<*>
    val retryBody = retry.data as com.phonemanager.client.models.UploadResponse
    check("batch retry with the same Idempotency-Key answers the same processed_count", retryBody == firstBody) { retryBody }
    check("batch retry is marked Idempotent-Replayed: true", header(retry.headers, "Idempotent-Replayed") == "true") { retry.headers }
    expectClientError("the same Idempotency-Key with another body gets 422", 422, "idempotency_key_reused") {
        locations.uploadLocationBatch(batch.copy(locations = batch.locations.take(1)), idemKey)
    }

    // The group listing shows both devices with their newest fix.
    val listed = devices.listDevices(group).devices
    check("group lists both devices, sorted by name", listed.map { it.deviceId } == listOf(deviceA, deviceB)) { listed }
    val la = listed.firstOrNull { it.deviceId == deviceA }?.lastLocation
    check(
        "A's last_location is the single fix",
        la != null && la.latitude == 48.1374 && la.longitude == 11.5755 && la.accuracy == 12.5 &&
            la.timestamp.toInstant().toEpochMilli() == single.timestamp,
    ) { la }
    val lb = listed.firstOrNull { it.deviceId == deviceB }?.lastLocation
    check(
        "B's last_location is the batch's newest fix by capture time",
        lb != null && lb.latitude == 52.5210 && lb.longitude == 13.4060 && lb.timestamp.toInstant().toEpochMilli() == now - 30_000,
    ) { lb }
    check("last_seen_at is set", listed.all { it.lastSeenAt != null }) { listed }

    // A validation error: the envelope names the field.
    val invalid = expectClientError("an out-of-range latitude gets 400 validation_error", 400, "validation_error") {
        locations.uploadLocation(single.copy(latitude = 123.0))
    }
    check(
        "the validation error lists details (field latitude)",
        !invalid?.details.isNullOrEmpty() && invalid!!.details!!.any { it.field == "latitude" } && invalid.message.isNotEmpty(),
    ) { invalid }
    val batchInvalid = expectClientError("an invalid batch fix gets 400 validation_error", 400, "validation_error") {
        locations.uploadLocationBatch(batch.copy(locations = listOf(batch.locations[0], batch.locations[1].copy(accuracy = -1.0))))
    }
    check("batch details name locations[1].accuracy", batchInvalid?.details?.any { it.field == "locations[1].accuracy" } == true) {
        batchInvalid
    }
    expectClientError("an unregistered device gets 404 not_found", 404, "not_found") {
        locations.uploadLocation(single.copy(deviceId = UUID.randomUUID()))
    }

    // Deactivation removes B from the listing.
    devices.deleteDevice(deviceB)
    val afterDelete = devices.listDevices(group).devices
    check("after DELETE only A is listed", afterDelete.map { it.deviceId } == listOf(deviceA)) { afterDelete }
}
